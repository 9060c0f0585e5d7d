/**
 * A canonical `wav` file: its 44-byte header (`RIFF`, `WAVE`, `fmt `, `data`) of integer samples
 * (`coding` 1) at `rate` Hz, `channels` and `bits` a sample, then `data`.
 */
export function wav(
  data: Buffer,
  {
    rate,
    channels = 1,
    bits = 16,
    coding = 1,
  }: { rate: number; channels?: number; bits?: number; coding?: number },
): Buffer {
  const head = Buffer.alloc(44);
  head.write("RIFF", 0, "latin1");
  head.writeUInt32LE(36 + data.length, 4);
  head.write("WAVEfmt ", 8, "latin1");
  head.writeUInt32LE(16, 16);
  head.writeUInt16LE(coding, 20);
  head.writeUInt16LE(channels, 22);
  head.writeUInt32LE(rate, 24);
  head.writeUInt32LE((rate * channels * bits) / 8, 28);
  head.writeUInt16LE((channels * bits) / 8, 32);
  head.writeUInt16LE(bits, 34);
  head.write("data", 36, "latin1");
  head.writeUInt32LE(data.length, 40);
  return Buffer.concat([head, data]);
}

/**
 * A `flac` stream: `fLaC` and its STREAMINFO block (the last metadata block) saying `samples`
 * (36 bits; 0: unknown) at `rate` Hz, 16-bit mono, then `frames` as given.
 */
export function flac(frames: Buffer, { rate, samples }: { rate: number; samples: number }): Buffer {
  const head = Buffer.alloc(42);
  head.write("fLaC", 0, "latin1");
  head.writeUInt8(0x80, 4);
  head.writeUIntBE(34, 5, 3);
  head.writeUInt16BE(4096, 8);
  head.writeUInt16BE(4096, 10);
  // Rate (20 bits), channels - 1 (3 bits), bits a sample - 1 (5 bits), samples (36 bits).
  const bits = (BigInt(rate) << 44n) | (0n << 41n) | (15n << 36n) | BigInt(samples);
  head.writeBigUInt64BE(bits, 18);
  return Buffer.concat([head, frames]);
}
