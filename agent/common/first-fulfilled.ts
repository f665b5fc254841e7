/**
 * The first promise to fulfil; rejects only when all have rejected, with the last reason (unlike
 * `Promise.any`'s AggregateError, so a caller sees the error of the path that failed last).
 */
export function firstFulfilled<T>(ps: readonly Promise<T>[]): Promise<T> {
  return new Promise((resolve, reject) => {
    let failed = 0;
    for (const p of ps) {
      p.then(resolve, (err) => {
        if (++failed === ps.length) reject(err);
      });
    }
  });
}
