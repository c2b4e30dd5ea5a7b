// Validates Gateway API objects (a JSON array on stdin) against @kubernetes-models/gateway-api,
// whose validators are generated from the Gateway API types (v1.5.1 for 2.0.0, pinned in
// package-lock.json): types, required fields, enums, patterns (e.g. a Duration), lengths.
// The generated schemas do not reject unknown fields, and a typo (`timeout:`) would be
// pruned by the API server without a word, so fields are also checked against the model's
// declared properties (its .d.ts), as `kubectl apply --validate=strict` would.
// CEL rules (x-kubernetes-validations) are not evaluated.
//
// Prints one JSON line per object: {"ref", "ok", "errors"}; exits 1 if any object is invalid,
// 2 if the input or the package is unusable.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const PACKAGE = "@kubernetes-models/gateway-api";
let root;
try {
  root = path.dirname(require.resolve(`${PACKAGE}/package.json`));
} catch {
  console.error(`validate.mjs: ${PACKAGE} is not installed: (cd tests/k8s/gateway && npm ci)`);
  process.exit(2);
}

// --- unknown fields, from the models' declarations -----------------------------------------

const declared = new Map(); // .d.ts path → {fields: Map(name → .d.ts path | null), strict}

function declaration(file) {
  if (declared.has(file)) return declared.get(file);
  const text = readFileSync(file, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "(\.\/[^"]+)\.js";$/gm)) {
    imports.set(m[1], path.join(path.dirname(file), `${m[2]}.d.ts`));
  }
  const body = text.match(/^export declare class \w+ extends Model<[^>]+>[^{]*\{\n([\s\S]*?)^\}/m);
  const fields = new Map();
  if (body) {
    for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: (.+);$/gm)) {
      const type = m[2].replace(/^Array<(.+)>$/, "$1");
      fields.set(m[1], imports.get(type) ?? null); // null: a scalar, a map or ObjectMeta
    }
  }
  const entry = { fields, strict: Boolean(body) };
  declared.set(file, entry);
  return entry;
}

function unknownFields(value, file, where, out) {
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, file, `${where}/${i}`, out));
    return out;
  }
  if (value === null || typeof value !== "object") return out;
  const { fields, strict } = declaration(file);
  if (!strict) return out;
  for (const [key, child] of Object.entries(value)) {
    if (!fields.has(key)) out.push(`${where}/${key}: unknown field`);
    else if (fields.get(key)) unknownFields(child, fields.get(key), `${where}/${key}`, out);
  }
  return out;
}

// --- the schema check ------------------------------------------------------------------------

async function check(obj) {
  const ref = `${obj?.kind}/${obj?.metadata?.name}`;
  const match = /^(gateway\.networking\.(?:x-)?k8s\.io)\/(\w+)$/.exec(obj?.apiVersion ?? "");
  if (!match || !/^\w+$/.test(obj.kind ?? "")) {
    return { ref, ok: false, errors: [`not a Gateway API object: apiVersion ${obj?.apiVersion}`] };
  }
  const module = `${match[1]}/${match[2]}/${obj.kind}`;
  let Model;
  try {
    Model = (await import(`${PACKAGE}/${module}`))[obj.kind];
  } catch {
    return { ref, ok: false, errors: [`${PACKAGE} has no model ${module}`] };
  }
  const errors = [];
  try {
    new Model(obj).validate();
  } catch (exc) {
    errors.push(exc.message);
  }
  unknownFields(obj, path.join(root, `${module}.d.ts`), "", errors);
  return { ref, ok: errors.length === 0, errors };
}

let objects;
try {
  objects = JSON.parse(readFileSync(0, "utf8"));
  if (!Array.isArray(objects)) throw new Error("expected a JSON array of objects");
} catch (exc) {
  console.error(`validate.mjs: ${exc.message}`);
  process.exit(2);
}
let failed = false;
for (const obj of objects) {
  const result = await check(obj);
  failed ||= !result.ok;
  console.log(JSON.stringify(result));
}
process.exit(failed ? 1 : 0);
