// The topic data schemas' JSON Schema subset (meshruntime/schema/data-schema-subset.json: the
// keywords a topic's schema may use), checked in the browser as the person types. The runtime
// has the last word (jsonschema, Draft 2020-12, in meshruntime.state.TopicSchema): this is the
// same subset with the same meaning, and it reports the path the way the runtime does
// ("data.items[0].price"). "format" is an annotation there, so it is one here too.
//
// validate(schema, value) -> null when valid, else {path, pointer, message} of the first problem.

const TYPES = {
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: (v) => Array.isArray(v),
  string: (v) => typeof v === "string",
  integer: (v) => typeof v === "number" && Number.isInteger(v),
  number: (v) => typeof v === "number",
  boolean: (v) => typeof v === "boolean",
  null: (v) => v === null,
};

function show(value) {
  const text = JSON.stringify(value);
  return text.length > 60 ? text.slice(0, 59) + "…" : text;
}

export function equal(a, b) {
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b) || (a === null) !== (b === null)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (a !== null && typeof a === "object") {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
  }
  return a === b;
}

function resolve(root, ref) {
  if (ref === "#") return root;
  if (!ref.startsWith("#/")) return undefined; // only local references: the server decides
  let node = root;
  for (const part of ref.slice(2).split("/")) {
    const key = decodeURIComponent(part).replaceAll("~1", "/").replaceAll("~0", "~");
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function codePoints(text) {
  return [...text].length;
}

class Checker {
  constructor(root) {
    this.root = root;
    this.depth = 0;
  }

  // Where jsonschema, and so the runtime, reports a problem in a member whose schema is ``false``:
  // at the object or array holding it, not at the member itself.
  under(schema, parts, key) {
    return schema === false ? parts : [...parts, key];
  }

  // null, or {parts, message}; parts are the keys and indexes from the data down
  check(schema, value, parts) {
    if (schema === true || schema === undefined) return null;
    if (schema === false) return { parts, message: `False schema does not allow ${show(value)}` };
    if (schema === null || typeof schema !== "object") return null;
    if (++this.depth > 200) { this.depth--; return null; } // a $ref cycle: leave it to the server
    try {
      return this.keywords(schema, value, parts);
    } finally {
      this.depth--;
    }
  }

  keywords(s, v, parts) {
    const fail = (message, at = parts) => ({ parts: at, message });
    if ("$ref" in s) {
      const problem = this.check(resolve(this.root, s.$ref), v, parts);
      if (problem) return problem;
    }
    if ("type" in s) {
      const types = Array.isArray(s.type) ? s.type : [s.type];
      if (!types.some((t) => TYPES[t] && TYPES[t](v))) return fail(`${show(v)} is not of type ${types.map((t) => `'${t}'`).join(", ")}`);
    }
    if ("const" in s && !equal(s.const, v)) return fail(`${show(s.const)} was expected`);
    if (Array.isArray(s.enum) && !s.enum.some((option) => equal(option, v))) {
      return fail(`${show(v)} is not one of ${show(s.enum)}`);
    }
    if (typeof v === "string") {
      if (typeof s.pattern === "string") {
        let pattern = null;
        try { pattern = new RegExp(s.pattern, "u"); } catch { pattern = null; }
        if (pattern && !pattern.test(v)) return fail(`${show(v)} does not match ${show(s.pattern)}`);
      }
      if (typeof s.minLength === "number" && codePoints(v) < s.minLength) return fail(`${show(v)} is too short`);
      if (typeof s.maxLength === "number" && codePoints(v) > s.maxLength) return fail(`${show(v)} is too long`);
    }
    if (typeof v === "number") {
      if (typeof s.minimum === "number" && v < s.minimum) return fail(`${v} is less than the minimum of ${s.minimum}`);
      if (typeof s.maximum === "number" && v > s.maximum) return fail(`${v} is greater than the maximum of ${s.maximum}`);
      if (typeof s.exclusiveMinimum === "number" && v <= s.exclusiveMinimum) return fail(`${v} is less than or equal to the minimum of ${s.exclusiveMinimum}`);
      if (typeof s.exclusiveMaximum === "number" && v >= s.exclusiveMaximum) return fail(`${v} is greater than or equal to the maximum of ${s.exclusiveMaximum}`);
      if (typeof s.multipleOf === "number" && s.multipleOf > 0) {
        const quotient = v / s.multipleOf;
        if (!Number.isFinite(quotient) || !Number.isInteger(quotient)) return fail(`${v} is not a multiple of ${s.multipleOf}`);
      }
    }
    if (TYPES.object(v)) {
      const keys = Object.keys(v);
      if (Array.isArray(s.required)) {
        const missing = s.required.find((name) => !Object.hasOwn(v, name));
        if (missing !== undefined) return fail(`'${missing}' is a required property`);
      }
      if (typeof s.minProperties === "number" && keys.length < s.minProperties) return fail(`${show(v)} has too few properties`);
      if (typeof s.maxProperties === "number" && keys.length > s.maxProperties) return fail(`${show(v)} has too many properties`);
      const properties = TYPES.object(s.properties) ? s.properties : {};
      for (const key of keys) {
        if (Object.hasOwn(properties, key)) {
          const problem = this.check(properties[key], v[key], this.under(properties[key], parts, key));
          if (problem) return problem;
        } else if ("additionalProperties" in s) {
          if (s.additionalProperties === false) return fail(`additional property '${key}' is not allowed`);
          const problem = this.check(s.additionalProperties, v[key], this.under(s.additionalProperties, parts, key));
          if (problem) return problem;
        }
      }
    }
    if (Array.isArray(v)) {
      if (typeof s.minItems === "number" && v.length < s.minItems) return fail(`${show(v)} should have at least ${s.minItems} items`);
      if (typeof s.maxItems === "number" && v.length > s.maxItems) return fail(`${show(v)} should have at most ${s.maxItems} items`);
      if (s.uniqueItems === true && v.some((x, i) => v.slice(i + 1).some((y) => equal(x, y)))) return fail(`${show(v)} has non-unique elements`);
      if ("items" in s) {
        for (let i = 0; i < v.length; i++) {
          const problem = this.check(s.items, v[i], this.under(s.items, parts, i));
          if (problem) return problem;
        }
      }
    }
    if (Array.isArray(s.allOf)) {
      for (const sub of s.allOf) {
        const problem = this.check(sub, v, parts);
        if (problem) return problem;
      }
    }
    if (Array.isArray(s.anyOf) && !s.anyOf.some((sub) => this.check(sub, v, parts) === null)) {
      return fail(`${show(v)} is not valid under any of the given schemas`);
    }
    if (Array.isArray(s.oneOf)) {
      const matching = s.oneOf.filter((sub) => this.check(sub, v, parts) === null).length;
      if (matching !== 1) return fail(matching ? `${show(v)} is valid under each of ${matching} given schemas` : `${show(v)} is not valid under any of the given schemas`);
    }
    if ("not" in s && this.check(s.not, v, parts) === null) return fail(`${show(v)} should not be valid under ${show(s.not)}`);
    return null;
  }
}

// The runtime's spelling of a place in the data: data, data.items[0].price (and a JSON Pointer).
export function pathOf(parts) {
  let path = "data", pointer = "";
  for (const part of parts) {
    path += typeof part === "number" ? `[${part}]` : `.${part}`;
    pointer += "/" + String(part).replaceAll("~", "~0").replaceAll("/", "~1");
  }
  return { path, pointer };
}

export function validate(schema, value) {
  if (schema === null || schema === undefined) return null;
  const problem = new Checker(schema).check(schema, value, []);
  return problem && { ...pathOf(problem.parts), message: problem.message };
}
