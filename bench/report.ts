/**
 * Writes the report again from a run's JSON (after a change to the report's layout):
 * `node --import tsx bench/report.ts bench/results/<timestamp>.json`.
 */
import { readFileSync } from 'node:fs';
import { writeReport, type BenchRun } from './lib/report.js';

const file = process.argv[2];
if (!file) {
  console.error('usage: node --import tsx bench/report.ts bench/results/<timestamp>.json');
  process.exit(2);
}
const run = JSON.parse(readFileSync(file, 'utf8')) as BenchRun;
const { table, files } = writeReport(run);
console.log(table);
console.error(`report: ${files.join(', ')}`);
