/** Where the tests find a Python with redis-py, and whether Python tests may skip (never in CI). */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const PYTHON_WORKERS = fileURLToPath(new URL('../../workers/python/', import.meta.url));
/** Debian's python3 has python3-redis; a pyenv `python3` earlier on PATH may not. */
export const PYTHON = process.env.PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const missing = spawnSync(PYTHON, ['-c', 'import redis'], { encoding: 'utf8' }).status !== 0;
/** Outside CI a machine without redis-py skips with this message; in CI (.ci/run installs python3-redis) the tests must run. */
export const pythonSkip: string | false = missing && !process.env.CI ? `${PYTHON} cannot import redis (apt-get install python3-redis, or set PYTHON)` : false;
