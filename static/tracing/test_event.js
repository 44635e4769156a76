// The test event form: the data is checked against the topic's schema as it is typed
// (schema_check.js, the runtime's subset), so a refusal is seen before sending. The server
// checks again with the runtime's own code and has the last word.

import { validate } from "./schema_check.js";

function start() {
  const data = document.getElementById("id_data");
  const status = document.getElementById("schema-status");
  const schemaNode = document.getElementById("topic-schema");
  if (!data || !status || !schemaNode) return;
  const schema = JSON.parse(schemaNode.textContent);

  const say = (text, valid) => {
    status.textContent = text;
    status.classList.toggle("valid", valid === true);
    status.classList.toggle("invalid", valid === false);
    status.dataset.valid = valid === undefined ? "" : String(valid);
  };

  const check = () => {
    const text = data.value.trim();
    if (!text) {
      if (schema) say("No data: the topic's schema requires JSON data (path data).", false);
      else say("No data.", undefined);
      return;
    }
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      say(`Not JSON: ${error.message}`, false);
      return;
    }
    if (!schema) {
      say("JSON; the topic has no schema.", true);
      return;
    }
    const problem = validate(schema, value);
    if (problem) say(`Does not match the schema at ${problem.path}: ${problem.message}`, false);
    else say("Matches the topic's schema.", true);
  };

  let pending = 0;
  data.addEventListener("input", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(check);
  });
  check();
}

start();
