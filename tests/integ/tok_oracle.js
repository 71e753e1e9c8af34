// tok_oracle.js: the @lenml/tokenizers side of tests/integ/test_tokenizer_oracle.sh.
//
//   node tok_oracle.js run TOKDIR CORPUSDIR OUTDIR [--chat]
//       encodes / decodes / renders the corpus with @lenml/tokenizers loaded from TOKDIR's
//       tokenizer.json + tokenizer_config.json, writing OUTDIR/{enc,enc_nospecial,expect,dec,
//       dec_skip[,chat]}.jsonl
//   node tok_oracle.js compare CORPUSDIR OURDIR ORACLEDIR [--chat]
//       compares afd-tok's files in OURDIR with the oracle's; prints each mismatch (tag, input,
//       first differing position) and a summary; exit 1 on any mismatch.
//
// How the oracle sees bytes: corpus items given as {"hex": ...} (possibly invalid UTF-8) are
// turned into a JS string with Buffer.toString('utf8'), which replaces each maximal ill-formed
// subpart with U+FFFD, the rule afd applies to raw bytes; afd-tok gets the raw bytes.
// "No special" mode: HF's encode_special_tokens matches special tokens and then treats their
// text as plain; transformers.js has no such switch, so the oracle is built from a copy of
// tokenizer.json without the special added tokens (equivalent here: no non-special added token
// overlaps a special one).
"use strict";
const fs = require("fs");
const path = require("path");

const NPM = path.join(__dirname, "..", "..", "deploy", "npm", "node_modules");
const MAX_REPORT = 25;

function readJsonl(file) {
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

function writeJsonl(file, rows) {
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : ""));
}

function itemText(it) {
  return it.text !== undefined ? it.text : Buffer.from(it.hex, "hex").toString("utf8");
}

function load(tokdir, dropSpecial) {
  const { TokenizerLoader } = require(path.join(NPM, "@lenml", "tokenizers"));
  const tj = JSON.parse(fs.readFileSync(path.join(tokdir, "tokenizer.json"), "utf8"));
  const cf = JSON.parse(fs.readFileSync(path.join(tokdir, "tokenizer_config.json"), "utf8"));
  if (dropSpecial) {
    tj.added_tokens = tj.added_tokens.filter((t) => !t.special);
    delete cf.added_tokens_decoder;
  }
  return TokenizerLoader.fromPreTrained({ tokenizerJSON: tj, tokenizerConfig: cf });
}

function flatContent(c) {
  if (c === null || c === undefined) return "";
  if (typeof c === "string") return c;
  return c.map((p) => p.text).join("");
}

function runChat(tok, corpusdir, outdir) {
  const chats = readJsonl(path.join(corpusdir, "chat.jsonl"));
  writeJsonl(path.join(outdir, "chat.jsonl"), chats.map((c) => {
    const msgs = c.messages.map((m) => ({ role: m.role, content: flatContent(m.content) }));
    const o = { add_generation_prompt: c.add_generation_prompt };
    return {
      text: tok.apply_chat_template(msgs, { ...o, tokenize: false }),
      ids: Array.from(tok.apply_chat_template(msgs, { ...o, tokenize: true, return_tensor: false })),
    };
  }));
}

function run(tokdir, corpusdir, outdir, withChat) {
  const tok = load(tokdir, false);
  const plain = load(tokdir, true);
  const corpus = readJsonl(path.join(corpusdir, "corpus.jsonl"));
  const enc = [], encNs = [], expect = [];
  for (const it of corpus) {
    const text = itemText(it);
    enc.push({ ids: tok.encode(text, { add_special_tokens: false }) });
    encNs.push({ ids: plain.encode(text, { add_special_tokens: false }) });
    expect.push({ text });
  }
  writeJsonl(path.join(outdir, "enc.jsonl"), enc);
  writeJsonl(path.join(outdir, "enc_nospecial.jsonl"), encNs);
  writeJsonl(path.join(outdir, "expect.jsonl"), expect);
  const seqs = readJsonl(path.join(corpusdir, "ids.jsonl"));
  // (transformers.js refuses to decode an empty list; its text is "")
  const dec = (ids, skip) => (ids.length ? tok.decode(ids, { skip_special_tokens: skip }) : "");
  writeJsonl(path.join(outdir, "dec.jsonl"), seqs.map((s) => ({ text: dec(s.ids, false) })));
  writeJsonl(path.join(outdir, "dec_skip.jsonl"), seqs.map((s) => ({ text: dec(s.ids, true) })));
  if (withChat) runChat(tok, corpusdir, outdir);
}

// ---- compare -----------------------------------------------------------------------------

function show(s, max = 80) {
  const j = JSON.stringify(s);
  return j.length > max ? j.slice(0, max) + "..." : j;
}

function firstDiff(a, b) {
  if (a === undefined || b === undefined) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

// ours[i][field] against theirs[i][tfield] for every i
function compareFile(name, ours, theirs, inputs, field, tfield, what) {
  let bad = 0;
  if (ours.length !== theirs.length) {
    console.log(`FAIL ${name}: ${ours.length} answers from afd-tok, ${theirs.length} from the oracle`);
    return 1 + Math.abs(ours.length - theirs.length);
  }
  for (let i = 0; i < ours.length; i++) {
    const a = ours[i][field], b = theirs[i][tfield];
    const d = ours[i].error ? 0 : firstDiff(a, b);
    if (d < 0) continue;
    bad++;
    if (bad > MAX_REPORT) continue;
    if (ours[i].error) console.log(`FAIL ${name} #${i} [${inputs[i].tag}]: afd-tok error ${ours[i].error}`);
    else
      console.log(`FAIL ${name} #${i} [${inputs[i].tag}] ${what(inputs[i])}: first difference at ${d}: ` +
        `afd ${show(a && a.slice(Math.max(0, d - 2), d + 4))} ` +
        `oracle ${show(b && b.slice(Math.max(0, d - 2), d + 4))}`);
  }
  console.log(`${bad ? "FAIL" : "ok  "} ${name}: ${ours.length - bad}/${ours.length} equal`);
  return bad;
}

function compare(corpusdir, ours, oracle, withChat) {
  const corpus = readJsonl(path.join(corpusdir, "corpus.jsonl"));
  const seqs = readJsonl(path.join(corpusdir, "ids.jsonl"));
  const r = (d, f) => readJsonl(path.join(d, f));
  const textOf = (it) => "input " + show(it.text !== undefined ? it.text : "hex:" + it.hex, 60);
  const idsOf = (s) => "ids " + show(s.ids, 60);
  const expect = r(oracle, "expect.jsonl");
  const rt = r(ours, "rt.jsonl"), dec = r(ours, "dec.jsonl"), skip = r(ours, "dec_skip.jsonl");
  const odec = r(oracle, "dec.jsonl"), oskip = r(oracle, "dec_skip.jsonl");
  let bad = 0;
  bad += compareFile("encode", r(ours, "enc.jsonl"), r(oracle, "enc.jsonl"), corpus, "ids", "ids", textOf);
  bad += compareFile("encode --no-special", r(ours, "enc_nospecial.jsonl"), r(oracle, "enc_nospecial.jsonl"),
    corpus, "ids", "ids", textOf);
  bad += compareFile("round trip decode(encode(x)) == x", rt, expect, corpus, "whole", "text", textOf);
  bad += compareFile("round trip, streamed", rt, expect, corpus, "text", "text", textOf);
  bad += compareFile("decode", dec, odec, seqs, "whole", "text", idsOf);
  bad += compareFile("decode, streamed", dec, odec, seqs, "text", "text", idsOf);
  bad += compareFile("decode --skip-special", skip, oskip, seqs, "whole", "text", idsOf);
  bad += compareFile("decode --skip-special, streamed", skip, oskip, seqs, "text", "text", idsOf);
  if (withChat) {
    const chats = readJsonl(path.join(corpusdir, "chat.jsonl"));
    const msgOf = (c) => "messages " + show(c.messages, 60);
    const ochat = r(oracle, "chat.jsonl"), chat = r(ours, "chat.jsonl");
    bad += compareFile("chat text", chat, ochat, chats, "text", "text", msgOf);
    bad += compareFile("chat ids", chat, ochat, chats, "ids", "ids", msgOf);
  }
  return bad;
}

function main() {
  const [cmd, ...a] = process.argv.slice(2);
  const withChat = a.includes("--chat");
  const args = a.filter((x) => x !== "--chat");
  if (cmd === "run" && args.length === 3) {
    run(args[0], args[1], args[2], withChat);
    return 0;
  }
  if (cmd === "compare" && args.length === 3) return compare(args[0], args[1], args[2], withChat) ? 1 : 0;
  console.error("usage: tok_oracle.js run TOKDIR CORPUSDIR OUTDIR [--chat] | compare CORPUSDIR OURDIR ORACLEDIR [--chat]");
  return 2;
}

process.exitCode = main();
