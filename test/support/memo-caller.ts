import { addressBytes } from "../../src/localnet/wire.js";

/**
 * A program that writes a memo by a call of its own (CPI), as an operator's program could: its
 * memo is an inner instruction, which a node's signature listing does not name (a validator's
 * `extract_memos` reads top-level instructions only). Built here as a bare SBF (v0) ELF: the
 * local chain has no compiler, and the program is a dozen instructions. It invokes the memo
 * program `memoProgram` with no accounts and `text` as data; the transaction must pass the memo
 * program among the accounts of the instruction that runs it, as any CPI's callee.
 */
export function memoCallerElf(memoProgram: string, text: string): Uint8Array {
  const memo = new TextEncoder().encode(text);
  if (memo.length > 200) throw new Error("memo text too long for the program's frame");
  const code: number[] = [];
  const ins = (op: number, dst: number, src: number, off: number, imm: number) => {
    const b = new Uint8Array(8);
    const v = new DataView(b.buffer);
    b[0] = op;
    b[1] = (src << 4) | dst;
    v.setInt16(2, off, true);
    v.setInt32(4, imm, true);
    code.push(...b);
  };
  const R1 = 1;
  const R10 = 10;
  // Writes `bytes` (padded to 8) at r10 + `at`, eight at a time through r1.
  const store = (bytes: Uint8Array, at: number) => {
    for (let i = 0; i < bytes.length; i += 8) {
      const chunk = new Uint8Array(8);
      chunk.set(bytes.subarray(i, i + 8));
      const v = new DataView(chunk.buffer);
      ins(0x18, R1, 0, 0, v.getInt32(0, true)); // lddw r1, imm64
      ins(0x00, 0, 0, 0, v.getInt32(4, true));
      ins(0x7b, R10, R1, at + i, 0); // stxdw [r10 + at + i], r1
    }
  };
  const pointer = (to: number, at: number) => {
    ins(0xbf, R1, R10, 0, 0); // mov64 r1, r10
    ins(0x07, R1, 0, 0, to); // add64 r1, to
    ins(0x7b, R10, R1, at, 0); // stxdw [r10 + at], r1
  };
  const value = (imm: number, at: number) => {
    ins(0xb7, R1, 0, 0, imm); // mov64 r1, imm
    ins(0x7b, R10, R1, at, 0);
  };
  const PROGRAM = -32;
  const DATA = -256;
  const INSTRUCTION = -320;
  store(addressBytes(memoProgram), PROGRAM);
  store(memo, DATA);
  // SolInstruction { program_id*, accounts*, account_len, data*, data_len }
  pointer(PROGRAM, INSTRUCTION);
  pointer(PROGRAM, INSTRUCTION + 8);
  value(0, INSTRUCTION + 16);
  pointer(DATA, INSTRUCTION + 24);
  value(memo.length, INSTRUCTION + 32);
  // sol_invoke_signed_c(instruction, account_infos, 0, signers_seeds, 0)
  ins(0xbf, 1, R10, 0, 0);
  ins(0x07, 1, 0, 0, INSTRUCTION);
  ins(0xbf, 2, R10, 0, 0);
  ins(0x07, 2, 0, 0, PROGRAM);
  ins(0xb7, 3, 0, 0, 0);
  ins(0xbf, 4, R10, 0, 0);
  ins(0x07, 4, 0, 0, PROGRAM);
  ins(0xb7, 5, 0, 0, 0);
  const callAt = code.length / 8;
  ins(0x85, 0, 0, 0, -1); // call sol_invoke_signed_c (the loader resolves it)
  ins(0xb7, 0, 0, 0, 0); // mov64 r0, 0
  ins(0x95, 0, 0, 0, 0); // exit
  return elf(Uint8Array.from(code), callAt);
}

/**
 * An ELF64 shared object (EM_BPF, e_flags 0: SBPF v0) holding `text` as its `.text`, whose
 * one call (`call -1`, at `callAt`) a dynamic relocation names `sol_invoke_signed_c`, the way a
 * compiler leaves a syscall for the loader to resolve.
 */
function elf(text: Uint8Array, callAt: number): Uint8Array {
  const utf8 = (t: string) => new TextEncoder().encode(t);
  const align = (n: number) => Math.ceil(n / 8) * 8;
  const names = utf8("\0.text\0.dynsym\0.dynstr\0.rel.dyn\0.dynamic\0.shstrtab\0");
  const nameOf = (name: string) => {
    const at = Buffer.from(names).indexOf(`${name}\0`, 1);
    if (at < 0) throw new Error(name);
    return at;
  };
  const dynstr = utf8("\0sol_invoke_signed_c\0");
  const textAt = 0x40;
  const dynsymAt = align(textAt + text.length);
  const dynstrAt = dynsymAt + 48;
  const relAt = align(dynstrAt + dynstr.length);
  const dynamicAt = relAt + 16;
  const namesAt = dynamicAt + 5 * 16;
  const sectionsAt = align(namesAt + names.length);
  const out = new Uint8Array(sectionsAt + 7 * 64);
  const v = new DataView(out.buffer);
  const u64 = (at: number, value: number | bigint) => v.setBigUint64(at, BigInt(value), true);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
  v.setUint16(16, 3, true); // ET_DYN
  v.setUint16(18, 247, true); // EM_BPF
  v.setUint32(20, 1, true);
  u64(24, textAt); // e_entry
  u64(40, sectionsAt); // e_shoff
  v.setUint16(52, 64, true);
  v.setUint16(54, 56, true);
  v.setUint16(58, 64, true);
  v.setUint16(60, 7, true); // e_shnum
  v.setUint16(62, 6, true); // e_shstrndx
  out.set(text, textAt);
  // .dynsym: the null symbol, then `sol_invoke_signed_c` (global, undefined).
  v.setUint32(dynsymAt + 24, 1, true);
  out[dynsymAt + 24 + 4] = 0x10;
  out.set(dynstr, dynstrAt);
  // .rel.dyn: R_BPF_64_32 (R_X86_64_32, 10) of symbol 1 at the call.
  u64(relAt, textAt + callAt * 8);
  u64(relAt + 8, (1n << 32n) | 10n);
  // .dynamic: DT_SYMTAB, DT_REL, DT_RELSZ, DT_RELENT, DT_NULL.
  [
    [6, dynsymAt],
    [17, relAt],
    [18, 16],
    [19, 16],
  ].forEach(([tag, value], i) => {
    u64(dynamicAt + i * 16, tag!);
    u64(dynamicAt + i * 16 + 8, value!);
  });
  out.set(names, namesAt);
  const section = (
    index: number,
    s: { name: string; type: number; flags?: number; at: number; size: number; entsize?: number },
  ) => {
    const at = sectionsAt + index * 64;
    v.setUint32(at, nameOf(s.name), true);
    v.setUint32(at + 4, s.type, true);
    u64(at + 8, s.flags ?? 0);
    u64(at + 16, s.type === 3 ? 0 : s.at);
    u64(at + 24, s.at);
    u64(at + 32, s.size);
    u64(at + 48, 8); // sh_addralign
    u64(at + 56, s.entsize ?? 0);
  };
  section(1, { name: ".text", type: 1, flags: 0x6, at: textAt, size: text.length });
  section(2, { name: ".dynsym", type: 11, flags: 0x2, at: dynsymAt, size: 48, entsize: 24 });
  section(3, { name: ".dynstr", type: 3, flags: 0x2, at: dynstrAt, size: dynstr.length });
  section(4, { name: ".rel.dyn", type: 9, flags: 0x2, at: relAt, size: 16, entsize: 16 });
  section(5, { name: ".dynamic", type: 6, flags: 0x3, at: dynamicAt, size: 80, entsize: 16 });
  section(6, { name: ".shstrtab", type: 3, at: namesAt, size: names.length });
  return out;
}
