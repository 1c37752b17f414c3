// Schema check of Kubernetes manifests: every YAML document is validated against the Kubernetes API's OpenAPI schema of
// its apiVersion/kind, as compiled by kubernetes-models (ajv). Types, required fields, enums and formats are checked; like
// the API schema itself, unknown field names are not (kubectl apply --validate=strict on a cluster catches those).
// Usage: npm ci --prefix deploy/k8s/validate && node deploy/k8s/validate/validate.mjs deploy/k8s/*.yaml
// Prints "ok FILE KIND NAME" per document, or one "error: ..." line per problem and exits 1.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

let failed = 0;
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("error: no manifest given (node validate.mjs FILE.yaml ...)");
  process.exit(2);
}
for (const file of files) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) {
      console.error(`error: ${file}: YAML: ${doc.errors[0].message.split("\n")[0]}`);
      failed++;
      continue;
    }
    const object = doc.toJS();
    if (object === null) continue;
    const { apiVersion, kind } = object;
    const where = `${file}: ${kind ?? "?"} ${object.metadata?.name ?? "?"}`;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
      console.error(`error: ${where}: no apiVersion/kind`);
      failed++;
      continue;
    }
    // "batch/v1" → kubernetes-models/batch/v1/Job; core "v1" → kubernetes-models/v1/PersistentVolumeClaim
    let model;
    try {
      model = (await import(`kubernetes-models/${apiVersion}/${kind}`))[kind];
    } catch {
      console.error(`error: ${where}: unknown apiVersion/kind ${apiVersion}/${kind}`);
      failed++;
      continue;
    }
    try {
      new model(object).validate();
      console.log(`ok ${where}`);
    } catch (e) {
      const details = (e.errors ?? []).map((x) => `${x.instancePath || "/"} ${x.message}`).join("; ");
      console.error(`error: ${where}: ${details || e.message}`);
      failed++;
    }
  }
}
process.exit(failed > 0 ? 1 : 0);
