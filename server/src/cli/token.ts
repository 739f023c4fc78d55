/**
 * Prints a stream token for development and tests:
 *   SSE_AUTH_SECRET=… npm run token -- --project 123 [--project 456 | --project '*'] [--ttl 3600]
 */
import { parseArgs } from 'node:util';
import { ID_RULE, isValidId } from '../channels.js';
import { signToken } from '../http/auth.js';

const { values } = parseArgs({
  options: {
    project: { type: 'string', multiple: true },
    ttl: { type: 'string', default: '3600' },
    secret: { type: 'string' },
  },
});
const secret = values.secret ?? process.env.SSE_AUTH_SECRET;
const projects = values.project ?? [];
const ttl = Number(values.ttl);
const problems = [
  !secret && 'no secret: set SSE_AUTH_SECRET (or pass --secret)',
  projects.length === 0 && 'no project: pass --project <id> (repeat it, or --project "*" for all)',
  projects.some((p) => p !== '*' && !isValidId(p)) && `a project id must be ${ID_RULE}`,
  !(Number.isInteger(ttl) && ttl > 0) && '--ttl must be a positive number of seconds',
].filter(Boolean);
if (problems.length > 0) {
  console.error(`npm run token: ${problems.join('; ')}`);
  process.exit(2);
}
console.log(await signToken(secret!, projects, ttl));
