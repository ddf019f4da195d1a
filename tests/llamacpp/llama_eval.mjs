// llama_eval.mjs — llama.cpp (through node-llama-cpp's prebuilt CPU binaries) as a
// second-opinion reference for lode. Offline: no build, no download, no GPU.
//
//   node tests/llamacpp/llama_eval.mjs MODEL.gguf --tokens 1,2,3 [--full] [--top K] [--gen N]
//
// Prints one JSON object per input position, the same format as `lode logits`:
//   {"pos": i, "top": [[id, logit], ...]}            (+ "logits": [...] with --full)
// and with --gen N one more line {"greedy": [ids...]}: N tokens of greedy continuation
// chosen by argmax of the raw logits (lowest id on ties), fed back one at a time.
//
// Raw logits come from LlamaContextSequence.controlledEvaluate with
// generateNext.logits — no sampler, no grammar, no repetition penalty involved.
// The KV cache is F32 (node-llama-cpp's default is F16, which would add ~1e-3 noise)
// and flash attention is off.
import path from "node:path";
import {createRequire} from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
// node-llama-cpp lives in tests/npm/node_modules (pinned there with a lockfile).
const require = createRequire(path.join(here, "..", "npm", "package.json"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

function parseArgs(argv) {
    const a = {model: null, tokens: [], full: false, top: 5, gen: 0, threads: 2};
    for (let i = 0; i < argv.length; i++) {
        const s = argv[i];
        if (s === "--tokens") a.tokens = argv[++i].split(",").filter((x) => x !== "").map(Number);
        else if (s === "--full") a.full = true;
        else if (s === "--top") a.top = Number(argv[++i]);
        else if (s === "--gen") a.gen = Number(argv[++i]);
        else if (s === "--threads") a.threads = Number(argv[++i]);
        else if (!a.model) a.model = s;
        else throw new Error(`unexpected argument ${s}`);
    }
    if (!a.model || a.tokens.length === 0) {
        console.error("usage: llama_eval.mjs MODEL.gguf --tokens 1,2,3 [--full] [--top K] [--gen N]");
        process.exit(2);
    }
    return a;
}

function toArray(map, nVocab) {
    const out = new Float64Array(nVocab).fill(-Infinity);
    for (const [tok, v] of map) out[tok] = v;
    return out;
}

function argmax(arr) {
    let best = 0;
    for (let i = 1; i < arr.length; i++) if (arr[i] > arr[best]) best = i;
    return best;
}

function topK(arr, k) {
    const idx = Array.from(arr.keys());
    idx.sort((x, y) => (arr[y] - arr[x]) || (x - y));
    return idx.slice(0, k).map((i) => [i, arr[i]]);
}

const args = parseArgs(process.argv.slice(2));
const llama = await getLlama({
    build: "never", gpu: false, usePrebuiltBinaries: true, progressLogs: false,
    logLevel: LlamaLogLevel.error,
});
const model = await llama.loadModel({modelPath: args.model, gpuLayers: 0, useMmap: true});
const contextSize = Math.max(64, args.tokens.length + args.gen + 8);
const context = await model.createContext({
    contextSize, batchSize: contextSize, sequences: 1, threads: args.threads,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
});
const seq = context.getSequence();

const want = {generateNext: {logits: true}};
const res = await seq.controlledEvaluate(args.tokens.map((t) => [t, want]));
// the logits map holds every vocabulary entry (n_vocab = rows of token_embd)
const vocab = res[0].next.logits.size;
let last = null;
for (let i = 0; i < args.tokens.length; i++) {
    const logits = toArray(res[i].next.logits, vocab);
    const obj = {pos: i, top: topK(logits, args.top)};
    if (args.full) obj.logits = Array.from(logits);
    process.stdout.write(JSON.stringify(obj) + "\n");
    last = logits;
}
if (args.gen > 0) {
    const greedy = [];
    let tok = argmax(last);
    for (let n = 0; n < args.gen; n++) {
        greedy.push(tok);
        if (n === args.gen - 1) break;
        const r = await seq.controlledEvaluate([[tok, want]]);
        tok = argmax(toArray(r[0].next.logits, vocab));
    }
    process.stdout.write(JSON.stringify({greedy}) + "\n");
}
await context.dispose();
await model.dispose();
await llama.dispose();
