// Following a freeze/unfreeze job from the CLI: progress lines on stderr while the processor
// confirms (stdout stays clean for --json), then each card's outcome, and a failure exit code
// when any card could not be changed at its processor.
import { CliError } from './client.js';
import type { AdminClient } from './client.js';
import type { CliIO } from './output.js';
import { when } from './output.js';
import type { Output } from './output.js';

export interface JobReport {
  job_id: string;
  action: 'freeze' | 'unfreeze';
  done: boolean;
  counts: { total: number; confirmed: number; pending: number; failed: number; superseded: number };
  cards: { processor: string; card_id: string; agent_id: string | null; status: string | null; outcome: string; processor_status: string | null; processor_checked_at: string | null; attempts: number; reason: string | null }[];
}

const POLL_MS = 500;
/** Above this many cards the table lists only the ones not confirmed. */
const FULL_TABLE = 50;

export function progressLine(report: JobReport): string {
  const c = report.counts;
  return `${report.action === 'freeze' ? 'freezing' : 'unfreezing'} at the processor: ${c.confirmed}/${c.total} confirmed, ${c.pending} pending, ${c.failed} failed`;
}

/** Polls the job until nothing is pending, printing progress; `follow: false` returns at once. */
export async function followJob(client: AdminClient, io: CliIO, first: JobReport, follow: boolean): Promise<JobReport> {
  let report = first;
  let last = '';
  while (follow && !report.done) {
    const line = progressLine(report);
    if (line !== last) io.stderr.write(`${line}\n`);
    last = line;
    await new Promise((r) => setTimeout(r, POLL_MS));
    report = await client.request<JobReport>('GET', `/cards/jobs/${encodeURIComponent(report.job_id)}`, { query: { cards: 'false' } });
    if (report.done) report = await client.request<JobReport>('GET', `/cards/jobs/${encodeURIComponent(report.job_id)}`);
  }
  return report;
}

export function printJob(out: Output, report: JobReport, subject: string): void {
  const c = report.counts;
  const verb = report.action === 'freeze' ? 'Frozen' : 'Unfrozen';
  if (!out.json) {
    out.line(`${verb} locally: ${subject} (${c.total} card${c.total === 1 ? '' : 's'}; authorizations ${report.action === 'freeze' ? 'decline' : 'are decided by policy'} from now on).`);
    const rows = report.cards.length <= FULL_TABLE ? report.cards : report.cards.filter((card) => card.outcome !== 'confirmed');
    if (rows.length > 0) {
      out.table(
        ['Card', 'Processor', 'Agent', 'Status', 'Outcome', 'At processor', 'Checked', 'Attempts', 'Reason'],
        rows.map((card) => [card.card_id, card.processor, card.agent_id, card.status, card.outcome, card.processor_status, when(card.processor_checked_at), card.attempts, card.reason]),
      );
    }
    out.line(`Processor: ${c.confirmed} confirmed, ${c.pending} pending, ${c.failed} failed${c.superseded ? `, ${c.superseded} superseded` : ''}.`);
    if (c.pending > 0) out.line(`Still working in the background: spend card job ${report.job_id}`);
  } else {
    out.printJson(report);
  }
  if (c.failed > 0) throw new CliError(`${c.failed} card${c.failed === 1 ? '' : 's'} could not be ${report.action === 'freeze' ? 'frozen' : 'unfrozen'} at the processor (they stay ${report.action === 'freeze' ? 'frozen' : 'unfrozen'} in spendgate)`);
}
