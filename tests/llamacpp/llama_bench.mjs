// llama_bench.mjs — llama.cpp's speed on a GGUF, measured the way
// `lode bench` measures lode: pp = one evaluation of P prompt tokens, tg = N
// single-token decodes after it (no sampling), best of R repetitions.
//   node tests/llamacpp/llama_bench.mjs MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 2] [-v VOCAB] [--no-mmap]
// (--no-mmap: weights read into memory, as lode does for models that fit)
// (tokens are pseudo-random ids below VOCAB; the content does not change the cost)
// Prints {"pp_tps": x, "tg_tps": y, "pp": P, "tg": N, "threads": T}.
import path from "node:path";
import {createRequire} from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "..", "npm", "package.json"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

const a = {model: null, p: 512, n: 128, t: 2, r: 2, v: 256, mmap: true};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (["-p", "-n", "-t", "-r", "-v"].includes(k)) a[k.slice(1)] = Number(argv[++i]);
    else if (k === "--no-mmap") a.mmap = false;
    else a.model = k;
}
const llama = await getLlama({build: "never", gpu: false, progressLogs: false, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: a.model, gpuLayers: 0, useMmap: a.mmap});
const ctxSize = a.p + a.n + 16;
const context = await model.createContext({contextSize: ctxSize, batchSize: Math.max(a.p, 1), sequences: 1,
                                           threads: a.t, batching: {dispatchSchedule: "nextTick"}});
let x = 88172645463325252n;
const rnd = () => { x ^= x << 13n; x &= (1n << 64n) - 1n; x ^= x >> 7n; x ^= x << 17n; x &= (1n << 64n) - 1n; return Number(x % BigInt(a.v)); };
const toks = Array.from({length: a.p + a.n}, rnd);
let bestPP = 0, bestTG = 0;
for (let r = 0; r < a.r; r++) {
    const seq = context.getSequence();
    if (a.p > 0) {
        const t0 = process.hrtime.bigint();
        await seq.evaluateWithoutGeneratingNewTokens(toks.slice(0, a.p));
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        bestPP = Math.max(bestPP, a.p / dt);
    }
    if (a.n > 0) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < a.n; i++) await seq.evaluateWithoutGeneratingNewTokens([toks[a.p + i]]);
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        bestTG = Math.max(bestTG, a.n / dt);
    }
    await seq.clearHistory();
    seq.dispose();
}
console.log(JSON.stringify({pp_tps: bestPP, tg_tps: bestTG, pp: a.p, tg: a.n, threads: a.t, mmap: a.mmap}));
await context.dispose();
await model.dispose();
await llama.dispose();
