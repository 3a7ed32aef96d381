// RFC 7386 JSON Merge Patch, applied in place where it can be.

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * Apply `patch` to `target` and return the result. Nested maps merge, `null`
 * deletes a key, any other value (arrays included) replaces. `target` is
 * modified in place when both are maps.
 */
export function applyMergePatch(target, patch) {
  if (!isObject(patch)) return patch;
  if (!isObject(target)) target = {};
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (value === null) {
      delete target[key];
    } else if (isObject(value)) {
      target[key] = applyMergePatch(target[key], value);
    } else {
      target[key] = value;
    }
  }
  return target;
}
