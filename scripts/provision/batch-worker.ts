/**
 * Worker thread of a factory batch: provisions the chunks it is sent, one result per device.
 * Several devices in flight per thread: scrypt runs on libuv's pool and file writes wait on
 * the disk, so one at a time would leave the core idle.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type BatchShared, type DeviceJob, writeDevices } from './device-writer.js';

export const DEVICES_IN_FLIGHT_PER_THREAD = 4;

const shared = workerData as BatchShared;
parentPort!.on('message', (jobs: DeviceJob[]) => {
  void writeDevices(jobs, shared, DEVICES_IN_FLIGHT_PER_THREAD, (r) => parentPort!.postMessage(r)).then(
    () => parentPort!.postMessage('chunk-done'),
    (err: unknown) => {
      throw err;
    },
  );
});
