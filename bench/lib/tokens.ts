/** The bench's generated text: deterministic word-like tokens, about 5.5 bytes each with their leading space. */
export function tokenPieces(count: number): string[] {
  const pieces: string[] = [];
  let seed = 42;
  for (let i = 0; i < count; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    const length = 1 + ((seed >> 16) % 8);
    let word = i === 0 ? '' : ' ';
    for (let j = 0; j < length; j++) word += String.fromCharCode(97 + ((seed >> (j * 2)) % 26));
    pieces.push(word);
  }
  return pieces;
}
