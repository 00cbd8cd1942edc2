// Compare `massact tokenize` with transformers.js (an independent implementation of tokenizer.json)
// on any texts: held-out strings, random slices of a file, or both.
//
//   cd tools/tokcheck && npm install --ignore-scripts
//   node tools/tokcheck/tokcheck.mjs --massact build/bin/massact --tokenizer DIR [--tokenizer DIR ...]
//        [--text TEXT ...] [--slices FILE --count N --seed S]
//
// Prints one line per tokenizer (texts checked, mismatches) and each mismatch; exits 1 on any.
import { PreTrainedTokenizer } from '@huggingface/transformers';
import { execFileSync } from 'child_process';
import fs from 'fs';

const args = process.argv.slice(2);
const opt = { tokenizers: [], texts: [], count: 200, seed: 1 };
for (let i = 0; i < args.length; ++i) {
  const a = args[i], v = () => { if (i + 1 >= args.length) throw new Error(`${a} needs a value`); return args[++i]; };
  if (a === '--massact') opt.massact = v();
  else if (a === '--tokenizer') opt.tokenizers.push(v());
  else if (a === '--text') opt.texts.push(v());
  else if (a === '--slices') opt.slices = v();
  else if (a === '--count') opt.count = Number(v());
  else if (a === '--seed') opt.seed = Number(v());
  else throw new Error(`unknown argument ${a}`);
}
if (!opt.massact || opt.tokenizers.length === 0) throw new Error('give --massact BIN and at least one --tokenizer DIR');

// Random slices of a file (a small deterministic generator, so a run can be repeated).
if (opt.slices) {
  const src = fs.readFileSync(opt.slices, 'utf8');
  let s = opt.seed >>> 0;
  const rnd = (n) => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s % n; };
  for (let k = 0; k < opt.count; ++k) {
    const len = 1 + rnd(300), at = rnd(Math.max(1, src.length - len));
    opt.texts.push(src.slice(at, at + len));
  }
}

let failed = 0;
for (const dir of opt.tokenizers) {
  const tok = new PreTrainedTokenizer(JSON.parse(fs.readFileSync(`${dir}/tokenizer.json`, 'utf8')),
                                      JSON.parse(fs.readFileSync(`${dir}/tokenizer_config.json`, 'utf8')));
  let bad = 0;
  for (const text of opt.texts) {
    for (const special of [true, false]) {
      const want = tok.encode(text, { add_special_tokens: special });
      const argv = ['tokenize', dir, '--json', ...(special ? [] : ['--no-special']), '--', text];
      const got = JSON.parse(execFileSync(opt.massact, argv, { encoding: 'utf8' })).ids;
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        ++bad;
        console.log(`  mismatch (${special ? 'special' : 'no special'}) ${JSON.stringify(text)}\n    massact ${JSON.stringify(got)}\n    transformers.js ${JSON.stringify(want)}`);
      }
    }
  }
  console.log(`${dir}: ${opt.texts.length} texts, ${bad} mismatches`);
  failed += bad;
}
process.exit(failed ? 1 : 0);
