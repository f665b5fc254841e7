/** `peerlink-agent diagnose [--json]`: prints the report; exit 0 when no check failed, 1 otherwise. */
import { runDiagnose } from './diagnose.js';
import { formatReport } from './report.js';

export async function diagnoseCommand(configFile: string, o: { json: boolean }): Promise<number> {
  const report = await runDiagnose({ configFile });
  process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.ok ? 0 : 1;
}
