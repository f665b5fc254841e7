/**
 * The two-node suite (test/helpers/two-nodes-suite.ts) against a real Redis Cluster: three
 * primaries with one replica each (scripts/lib/redis-cluster.ts), the nodes given its seed nodes
 * (`redis.cluster_nodes`), their messages on sharded pub/sub.
 */
import { startRedisCluster } from '../../scripts/lib/redis-cluster.js';
import { twoNodesSuite } from '../helpers/two-nodes-suite.js';

twoNodesSuite('Redis Cluster', () => startRedisCluster());
