/**
 * Process groups: the agent and the dev cluster start each child as a group leader so that a
 * stop reaches the child's own children too.
 */

/** True while any process of the group exists (the leader may be gone, its children not). */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
