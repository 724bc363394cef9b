// A superset of @types/node's cluster: native-cluster's objects fit
// wherever node:cluster's types are expected.
import cluster from 'native-cluster';
import * as native from 'native-cluster';
import nodeCluster from 'node:cluster';
import type * as node from 'node:cluster';

const asNode: node.Cluster = cluster;
const worker: node.Worker = cluster.fork();
const settings: node.ClusterSettings = cluster.settings;
const fromNode: native.ClusterSettings = nodeCluster.settings;
const address: native.Address = {} as node.Address;
const backToNative: native.Address = address;
const sameApi: Pick<node.Cluster, 'fork' | 'on' | 'setupPrimary' | 'disconnect'> = native.default;
function takesNodeCluster(c: typeof nodeCluster): void { void c; }
takesNodeCluster(cluster);
void [asNode, worker, settings, fromNode, backToNative, sameApi];
