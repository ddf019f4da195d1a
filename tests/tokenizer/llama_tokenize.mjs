// llama_tokenize.mjs — llama.cpp's tokenizer (node-llama-cpp's prebuilt
// binaries, offline) as a second opinion for lode's.
//
//   node tests/tokenizer/llama_tokenize.mjs VOCAB.gguf cases.json > ids.json
//     cases.json: a JSON array of strings; prints a JSON array of id arrays
//     (no BOS, special-token text not parsed: llama.cpp's test-tokenizer-0).
//   node tests/tokenizer/llama_tokenize.mjs VOCAB.gguf --bench FILE [--reps N]
//     prints {"bytes": n, "seconds": s, "mb_per_s": x, "tokens": k}.
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "..", "npm", "package.json"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

const args = process.argv.slice(2);
const modelPath = args[0];
const llama = await getLlama({build: "never", gpu: false, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, vocabOnly: true});

const bi = args.indexOf("--bench");
if (bi >= 0) {
    const text = fs.readFileSync(args[bi + 1], "utf8");
    const ri = args.indexOf("--reps");
    const reps = ri >= 0 ? Number(args[ri + 1]) : 3;
    let best = Infinity, n = 0;
    for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint();
        n = model.tokenize(text, false).length;
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        best = Math.min(best, dt);
    }
    const bytes = Buffer.byteLength(text);
    console.log(JSON.stringify({bytes, seconds: best, mb_per_s: bytes / 1e6 / best, tokens: n}));
} else {
    const cases = JSON.parse(fs.readFileSync(args[1], "utf8"));
    const out = cases.map((s) => Array.from(model.tokenize(s, false)));
    console.log(JSON.stringify(out));
}
await model.dispose();
await llama.dispose();
