/**
 * Two real server nodes sharing one real redis-server; the real agent registered with node 1
 * (the suite: test/helpers/two-nodes-suite.ts; the same against a Redis Cluster: two-nodes-cluster.spec.ts).
 */
import { startRedis } from '../../scripts/lib/redis-process.js';
import { twoNodesSuite } from '../helpers/two-nodes-suite.js';

twoNodesSuite('one Redis', startRedis);
