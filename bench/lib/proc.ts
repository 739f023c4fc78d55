/** Reads CPU time and resident memory of processes from /proc (Linux only). */
import { readFileSync, writeFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) a process has used so far; 0 when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Resident set size in bytes; 0 when the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Peak resident set size (VmHWM) in bytes since the process started or since resetPeakRss(); 0 when it is gone. */
export function peakRssBytes(pid: number): number {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Resets a process's peak RSS to its current RSS (Linux 4.0+); returns false where the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** The direct children of a process (e.g. nginx's worker under its master). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Measures the CPU share (1.0 = one core) of some processes over an interval. */
export class CpuMeter {
  readonly #pids: number[];
  #start: number[];
  #busy = machineBusySeconds();
  #startedAt = performance.now();

  constructor(pids: number[]) {
    this.#pids = pids;
    this.#start = pids.map(cpuSeconds);
  }

  /** Share of one core per pid since construction. */
  read(): number[] {
    const elapsed = (performance.now() - this.#startedAt) / 1000;
    return this.#pids.map((pid, i) => (elapsed > 0 ? (cpuSeconds(pid) - this.#start[i]!) / elapsed : 0));
  }

  /** Share of one core that the whole machine was busy since construction (all processes, softirq). */
  machine(): number {
    const elapsed = (performance.now() - this.#startedAt) / 1000;
    return elapsed > 0 ? (machineBusySeconds() - this.#busy) / elapsed : 0;
  }
}

/** CPU seconds all cores spent busy (everything but idle and iowait) since boot. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - values[3]! - values[4]!) / TICKS_PER_SECOND;
}
