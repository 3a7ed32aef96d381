// The demo pages' front-end packages come from npm (`npm ci --prefix web`). When they are
// missing, the server answers their /vendor/ URLs with 404 and a text saying what to run;
// this module (loaded by both pages right after their import map) shows that text.
try {
  const urls = Object.values(JSON.parse(document.querySelector("script[type=importmap]").text).imports);
  const bad = (await Promise.all(urls.map((url) => fetch(url, { method: "HEAD" })))).find((r) => !r.ok);
  if (bad) {
    const reply = await fetch(bad.url);
    const p = document.createElement("p");
    p.id = "missing-packages";
    p.setAttribute("role", "alert");
    p.style.cssText = "position:fixed;z-index:1000;top:30%;left:50%;transform:translateX(-50%);max-width:40em;" +
      "margin:0;padding:12px 16px;border-radius:6px;background:#7a1b1b;color:#fff;font:15px/1.4 system-ui,sans-serif";
    p.textContent = reply.headers.get("content-type")?.startsWith("text/plain") ? await reply.text()
      : "The front-end packages are missing: run `npm ci --prefix web`, then restart the server.";
    document.body.append(p);
  }
} catch (e) {
  console.warn("could not check the front-end packages:", e);
}

