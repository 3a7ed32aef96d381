// The demo's three.js renderer: the ground, one mesh per entity, picking and
// projection. It knows nothing about the network; cube-page.js feeds it what
// RealtimeClient.view() returns each frame.

import * as THREE from "three";

const AVATAR_SIZE = 1;
const CUBE_SIZE = 0.7;
// The server's own entities (--drones, --pickups): shapes of their own, never cubes.
const DRONE_RADIUS = 0.55; // an octahedron, hovering
const DRONE_HOVER = 1.35; // height of its centre
const PICKUP_RADIUS = 0.32; // a small torus, spinning upright
const PICKUP_HEIGHT = 0.6;
/** The kinds drawn with a shape of their own; any other kind is drawn as a cube. */
const KINDS = new Set(["avatar", "cube", "drone", "pickup"]);
/** The kinds a player acts on (clicks and hover pick them); the server's drones and pickups are scenery. */
const PICKABLE = new Set(["avatar", "cube"]);
/** Height of an entity's centre above the ground, by kind. */
const HEIGHT = { avatar: AVATAR_SIZE / 2, cube: CUBE_SIZE / 2, drone: DRONE_HOVER, pickup: PICKUP_HEIGHT };
const HOVER_MIX = 0.45;
const WHITE = new THREE.Color("#ffffff");
const CAMERA_OFFSET = new THREE.Vector3(0, 20, 15); // from the point in focus, at zoom 1

/** True on a software rasteriser (SwiftShader, llvmpipe), where multisampling costs a frame rate. */
function isSoftwareGL() {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    if (!gl) return false;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return /swiftshader|llvmpipe|software/i.test(String(name));
  } catch {
    return false;
  }
}

function labelSprite(text) {
  const canvas = document.createElement("canvas");
  canvas.width = 256;
  canvas.height = 64;
  const ctx = canvas.getContext("2d");
  ctx.font = "bold 30px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.lineWidth = 6;
  ctx.strokeStyle = "rgba(0,0,0,0.75)";
  ctx.strokeText(text, 128, 32);
  ctx.fillStyle = "#ffffff";
  ctx.fillText(text, 128, 32);
  const texture = new THREE.CanvasTexture(canvas);
  texture.colorSpace = THREE.SRGBColorSpace;
  const sprite = new THREE.Sprite(new THREE.SpriteMaterial({ map: texture, depthTest: false, transparent: true }));
  sprite.scale.set(4, 1, 1);
  sprite.position.y = 1.25;
  sprite.renderOrder = 10;
  sprite.userData.text = text;
  return sprite;
}

export class WorldView {
  constructor(canvas) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: !isSoftwareGL() });
    this.renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color("#11161d");
    this.camera = new THREE.PerspectiveCamera(45, 1, 0.1, 500);
    this.raycaster = new THREE.Raycaster();
    this.entities = new Map(); // id -> {group, body, material, outline, label, kind, pickable, color}

    this.scene.add(new THREE.HemisphereLight("#dfe9ff", "#2a2f36", 1.6));
    const sun = new THREE.DirectionalLight("#ffffff", 1.8);
    sun.position.set(10, 30, 15);
    this.scene.add(sun);

    this.shapes = {
      avatar: new THREE.BoxGeometry(AVATAR_SIZE, AVATAR_SIZE, AVATAR_SIZE),
      cube: new THREE.BoxGeometry(CUBE_SIZE, CUBE_SIZE, CUBE_SIZE),
      drone: new THREE.OctahedronGeometry(DRONE_RADIUS),
      pickup: new THREE.TorusGeometry(PICKUP_RADIUS, 0.11, 12, 32),
    };
    this.edges = {
      avatar: new THREE.EdgesGeometry(this.shapes.avatar),
      cube: new THREE.EdgesGeometry(new THREE.BoxGeometry(CUBE_SIZE * 1.12, CUBE_SIZE * 1.12, CUBE_SIZE * 1.12)),
      drone: new THREE.EdgesGeometry(new THREE.OctahedronGeometry(DRONE_RADIUS * 1.12)),
      pickup: new THREE.EdgesGeometry(new THREE.TorusGeometry(PICKUP_RADIUS, 0.13, 6, 16), 30),
    };
    // a drone's shadow on the ground, so you can tell where it hovers, and its rotor guard
    this.droneShadow = {
      geometry: new THREE.CircleGeometry(DRONE_RADIUS * 0.9, 24),
      material: new THREE.MeshBasicMaterial({ color: "#000000", transparent: true, opacity: 0.35, depthWrite: false }),
    };
    this.droneRotor = {
      geometry: new THREE.TorusGeometry(DRONE_RADIUS * 1.45, 0.045, 8, 40),
      material: new THREE.MeshStandardMaterial({ color: "#e8edf2", roughness: 0.4, metalness: 0.3 }),
    };

    this.ownRing = new THREE.Mesh(
      new THREE.RingGeometry(0.8, 0.95, 40),
      new THREE.MeshBasicMaterial({ color: "#ffffff", side: THREE.DoubleSide }),
    );
    this.ownRing.rotation.x = -Math.PI / 2;
    this.ownRing.visible = false;
    this.scene.add(this.ownRing);

    // --view-radius: the edge of what the server shows you, around your avatar
    this.viewRadius = 0;
    this.viewRing = new THREE.Mesh(
      new THREE.BufferGeometry(),
      new THREE.MeshBasicMaterial({ color: "#9fd3ff", side: THREE.DoubleSide, transparent: true, opacity: 0.3, depthWrite: false }),
    );
    this.viewRing.rotation.x = -Math.PI / 2;
    this.viewRing.visible = false;
    this.scene.add(this.viewRing);

    this.marker = new THREE.Mesh(
      new THREE.RingGeometry(0.35, 0.6, 32),
      new THREE.MeshBasicMaterial({ color: "#ffffff", side: THREE.DoubleSide, transparent: true }),
    );
    this.marker.rotation.x = -Math.PI / 2;
    this.marker.visible = false;
    this.scene.add(this.marker);
    this.markerSince = 0;

    this.setWorldSize(40);
    this.resize();
    window.addEventListener("resize", () => this.resize());
  }

  setWorldSize(size) {
    if (this.size === size) return;
    this.size = size;
    if (this.ground) this.scene.remove(this.ground, this.grid);
    this.ground = new THREE.Mesh(
      new THREE.PlaneGeometry(size, size),
      new THREE.MeshStandardMaterial({ color: "#2b3541", roughness: 0.95 }),
    );
    this.ground.rotation.x = -Math.PI / 2;
    this.grid = new THREE.GridHelper(size, size, "#4d5d70", "#38444f");
    this.grid.position.y = 0.002;
    this.scene.add(this.ground, this.grid);
    this.focus = this.focus ?? new THREE.Vector3();
    this.zoom = this.zoom ?? 1;
    this._placeCamera();
  }

  /** The radius of the ring drawn around your avatar (welcome.view_radius); 0: no ring. */
  setViewRadius(radius) {
    const r = radius > 0 ? radius : 0;
    if (r === this.viewRadius) return;
    this.viewRadius = r;
    this.viewRing.geometry.dispose();
    this.viewRing.geometry = r ? new THREE.RingGeometry(Math.max(0, r - 0.12), r, 160) : new THREE.BufferGeometry();
    if (!r) this.viewRing.visible = false;
  }

  /** Zoom in (< 1) or out (> 1), between close-up and the whole plane. */
  zoomBy(factor) {
    this.zoom = Math.max(0.45, Math.min(this.maxZoom(), this.zoom * factor));
    this._placeCamera();
  }

  /** The zoom at which the whole plane is in view. */
  maxZoom() {
    return (this.size * 0.95) / CAMERA_OFFSET.y;
  }

  /** Keep (x, z) (your avatar) in view; the camera eases toward it. */
  follow(x, z, ease = 0.12) {
    const half = this.size / 2;
    // The closer the zoom, the more the camera may wander toward the edges.
    const room = half * Math.max(0, 1 - this.zoom / this.maxZoom());
    const tx = Math.max(-room, Math.min(room, x));
    const tz = Math.max(-room, Math.min(room, z));
    this.focus.x += (tx - this.focus.x) * ease;
    this.focus.z += (tz - this.focus.z) * ease;
    this.settled = Math.abs(tx - this.focus.x) < 0.005 && Math.abs(tz - this.focus.z) < 0.005;
    this._placeCamera();
  }

  _placeCamera() {
    const o = CAMERA_OFFSET;
    this.camera.position.set(this.focus.x + o.x * this.zoom, o.y * this.zoom, this.focus.z + o.z * this.zoom);
    this.camera.lookAt(this.focus.x, 0, this.focus.z + 1.5 * this.zoom);
  }

  resize() {
    const w = window.innerWidth;
    const h = window.innerHeight;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    // Keep the whole plane in view on narrow windows too.
    this.camera.fov = w / h < 1.2 ? 45 * (1.2 / (w / h)) ** 0.8 : 45;
    this.camera.updateProjectionMatrix();
  }

  /**
   * Make the meshes match `view` (Map id -> entity with pos and color).
   * `ui` = {you, avatarId, names: owner -> name, selected: Set, hovered: id}.
   */
  sync(view, ui) {
    for (const [id, rec] of this.entities) {
      if (!view.has(id)) {
        this.scene.remove(rec.group);
        rec.material.dispose();
        rec.label?.material.map.dispose();
        rec.label?.material.dispose();
        this.entities.delete(id);
      }
    }
    this.ownRing.visible = false;
    this.viewRing.visible = false;
    for (const [id, e] of view) {
      const kind = KINDS.has(e.kind) ? e.kind : "cube";
      let rec = this.entities.get(id);
      if (!rec || rec.kind !== kind) {
        if (rec) this.scene.remove(rec.group);
        rec = this._create(id, kind);
      }
      const [x, , z] = e.pos;
      rec.group.position.set(x, HEIGHT[kind], z);
      if (rec.colorHex !== e.color) {
        rec.colorHex = e.color;
        rec.color = new THREE.Color(e.color || "#cccccc");
        if (!rec.pickable) rec.material.emissive.copy(rec.color).multiplyScalar(0.35);
      }
      rec.material.color.copy(rec.color);
      if (ui.hovered === id && rec.pickable) rec.material.color.lerp(WHITE, HOVER_MIX);
      rec.outline.visible = ui.selected.has(id) || (rec.flashUntil ?? 0) > performance.now();
      if (kind === "avatar") {
        const name = ui.names[e.owner] ?? e.owner;
        if (!rec.label || rec.label.userData.text !== name) {
          if (rec.label) rec.group.remove(rec.label);
          rec.label = labelSprite(name);
          rec.group.add(rec.label);
        }
        if (id === ui.avatarId) {
          this.ownRing.visible = true;
          this.ownRing.position.set(x, 0.01, z);
          if (this.viewRadius) {
            this.viewRing.visible = true;
            this.viewRing.position.set(x, 0.015, z);
          }
        }
      }
    }
  }

  _create(id, kind) {
    const pickable = PICKABLE.has(kind);
    const material = pickable
      ? new THREE.MeshStandardMaterial({ color: "#cccccc", roughness: 0.6 })
      : new THREE.MeshStandardMaterial({
          color: "#cccccc",
          roughness: 0.3,
          metalness: kind === "pickup" ? 0.5 : 0.2,
          flatShading: kind === "drone",
        });
    const body = new THREE.Mesh(this.shapes[kind], material);
    body.userData.entityId = id;
    const outline = new THREE.LineSegments(this.edges[kind], new THREE.LineBasicMaterial({ color: "#ffffff" }));
    outline.visible = false;
    const group = new THREE.Group();
    group.add(body, outline);
    let rotor = null;
    if (kind === "drone") {
      const shadow = new THREE.Mesh(this.droneShadow.geometry, this.droneShadow.material);
      shadow.rotation.x = -Math.PI / 2;
      shadow.position.y = 0.02 - DRONE_HOVER;
      rotor = new THREE.Mesh(this.droneRotor.geometry, this.droneRotor.material);
      rotor.rotation.x = -Math.PI / 2;
      group.add(shadow, rotor);
    }
    this.scene.add(group);
    // a phase of its own, so drones and pickups do not bob and spin in step
    const phase = ((Number(id) || 0) * 2.399) % (Math.PI * 2);
    const rec = { id, kind, pickable, phase, group, body, material, outline, rotor, label: null, colorHex: null, color: null };
    this.entities.set(id, rec);
    return rec;
  }

  /**
   * What is drawn, for tests and tools: [{id, kind, shape (the geometry's type),
   * color, pos: [x, y, z], inScene, pickable}], of one kind or all.
   */
  describe(kind = null) {
    const out = [];
    for (const rec of this.entities.values()) {
      if (kind && rec.kind !== kind) continue;
      const p = rec.group.position;
      out.push({
        id: rec.id,
        kind: rec.kind,
        shape: rec.body.geometry.type,
        color: rec.colorHex,
        pos: [p.x, p.y, p.z],
        inScene: rec.group.parent === this.scene && rec.body.parent === rec.group,
        pickable: rec.pickable,
      });
    }
    return out;
  }

  /** Outline an entity for a moment (a tag hit). */
  flash(id, ms = 600) {
    const rec = this.entities.get(id);
    if (rec) rec.flashUntil = performance.now() + ms;
  }

  showMarker(x, z, color) {
    this.marker.position.set(x, 0.02, z);
    this.marker.material.color.set(color || "#ffffff");
    this.marker.visible = true;
    this.markerSince = performance.now();
    this.markerTarget = [x, z];
  }

  hideMarker() {
    this.marker.visible = false;
    this.markerTarget = null;
  }

  render() {
    // the server's entities move by themselves: a drone bobs and turns, a pickup spins
    const s = performance.now() / 1000;
    for (const rec of this.entities.values()) {
      if (rec.kind === "drone") {
        rec.body.position.y = 0.12 * Math.sin(s * 2.2 + rec.phase);
        rec.body.rotation.y = s * 1.5 + rec.phase;
        rec.outline.position.y = rec.rotor.position.y = rec.body.position.y;
        rec.outline.rotation.y = rec.body.rotation.y;
      } else if (rec.kind === "pickup") {
        rec.body.rotation.y = s * 2.5 + rec.phase;
        rec.body.position.y = 0.08 * Math.sin(s * 3 + rec.phase);
      }
    }
    if (this.marker.visible) {
      const age = (performance.now() - this.markerSince) / 1000;
      const s = 1 + 0.15 * Math.sin(age * 6);
      this.marker.scale.set(s, s, s);
    }
    this.renderer.render(this.scene, this.camera);
  }

  _ndc(clientX, clientY) {
    const r = this.canvas.getBoundingClientRect();
    return new THREE.Vector2(((clientX - r.left) / r.width) * 2 - 1, -((clientY - r.top) / r.height) * 2 + 1);
  }

  /**
   * The nearest entity under a screen point that passes `accept(id)`: its id, or null.
   * Only avatars and cubes are picked: the server's drones and pickups never are.
   */
  pick(clientX, clientY, accept = () => true) {
    this.raycaster.setFromCamera(this._ndc(clientX, clientY), this.camera);
    const bodies = [...this.entities.values()].filter((r) => r.pickable).map((r) => r.body);
    const hit = this.raycaster.intersectObjects(bodies, false).find((h) => accept(h.object.userData.entityId));
    return hit ? hit.object.userData.entityId : null;
  }

  /** The ground point [x, z] under a screen point (clamped to the plane), or null. */
  groundPoint(clientX, clientY) {
    this.raycaster.setFromCamera(this._ndc(clientX, clientY), this.camera);
    const hit = this.raycaster.intersectObject(this.ground, false)[0];
    if (!hit) return null;
    const half = this.size / 2;
    const clamp = (v) => Math.max(-half, Math.min(half, Math.round(v * 100) / 100));
    return [clamp(hit.point.x), clamp(hit.point.z)];
  }

  /** Screen (CSS pixel, viewport) position of a world point [x, y, z]. */
  project(x, y, z) {
    const v = new THREE.Vector3(x, y, z).project(this.camera);
    const r = this.canvas.getBoundingClientRect();
    return { x: r.left + ((v.x + 1) / 2) * r.width, y: r.top + ((1 - v.y) / 2) * r.height };
  }

  /** Where an entity is drawn: {x, y} on screen (its centre) and pos [x, y, z], or null. */
  drawn(id) {
    const rec = this.entities.get(String(id));
    if (!rec) return null;
    const p = rec.group.position;
    return { ...this.project(p.x, p.y, p.z), pos: [p.x, p.y, p.z] };
  }
}
