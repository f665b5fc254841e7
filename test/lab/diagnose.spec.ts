/** diagnose in the NAT lab: tells a symmetric NAT from an endpoint-independent one, and finds the UPnP gateway. */
import { diagnoseScenario } from '../../scripts/lab/diagnose.js';
import { ADDR } from '../../scripts/lab/topology.js';
import { labTest } from '../helpers/lab-test.js';

const check = (r: Awaited<ReturnType<typeof diagnoseScenario>>, id: string) => r.report.checks.find((c) => c.id === id)!;

labTest(
  'behind an endpoint-independent NAT with a UPnP IGD: mapping endpoint-independent, gateway found with its external address',
  async (t) => {
    const r = await diagnoseScenario({ deviceNat: 'port-restricted', upnp: 'igd2' });
    t.log(r.text);
    t.is(check(r, 'server-udp').verdict, 'ok');
    t.is(check(r, 'server-tls').verdict, 'ok');
    t.like(check(r, 'public-address').data, { public: { address: ADDR.routerB }, behindNat: true });
    t.is(check(r, 'nat-mapping').verdict, 'ok');
    t.like(check(r, 'nat-mapping').data, { behaviour: 'endpoint-independent' });
    t.is(check(r, 'port-mapping').verdict, 'ok');
    t.like(check(r, 'port-mapping').data, { mapped: true, externalAddress: ADDR.routerB });
    t.true(r.report.ok);
  },
);

labTest('behind a symmetric NAT without a gateway: mapping symmetric (two external ports), no gateway, each with a fix', async (t) => {
  const r = await diagnoseScenario({ deviceNat: 'symmetric', upnp: 'none' });
  t.log(r.text);
  t.is(check(r, 'server-udp').verdict, 'ok');
  const m = check(r, 'nat-mapping');
  t.is(m.verdict, 'warn');
  t.like(m.data, { behaviour: 'symmetric' });
  const ports = m.data!.ports as number[];
  t.not(ports[0], ports[1]);
  t.truthy(m.fix);
  t.is(check(r, 'port-mapping').verdict, 'warn');
  t.like(check(r, 'port-mapping').data, { mapped: false });
  t.true(r.report.ok, 'warnings, not failures: the device is still reachable through its own mapping and the relay');
});
