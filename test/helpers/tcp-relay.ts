import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay in front of a real server (PostgreSQL in the outage tests): the process under
 * test reaches the database only through it. `pause()` is a stall as the client sees it
 * (connections stay open, nothing answers, like SIGSTOP of the postmaster); `cut()` is a
 * restart (connections reset, new ones refused) until `restore()`. `retarget()` points new
 * connections elsewhere (a failover behind a fixed address).
 */
export class TcpRelay {
  readonly #pairs = new Set<[Socket, Socket]>();
  #server: Server | null = null;
  #paused = false;
  #cut = false;
  port = 0;
  constructor(
    private host: string,
    private targetPort: number,
  ) {}

  /** New connections go to host:port from now on; open ones stay where they are. */
  retarget(host: string, port: number): void {
    this.host = host;
    this.targetPort = port;
  }

  /** Connections currently relayed. */
  get connections(): number {
    return this.#pairs.size;
  }

  async start(): Promise<void> {
    this.#server = createServer((client) => {
      if (this.#cut) return void client.destroy();
      const upstream = connect(this.targetPort, this.host);
      const pair: [Socket, Socket] = [client, upstream];
      this.#pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.#pairs.delete(pair);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      if (this.#paused) for (const s of pair) s.pause();
    });
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.#server.address() as AddressInfo).port;
  }

  /** Stall: nothing is read either way until resume (bytes wait in the kernel buffers). */
  pause(): void {
    this.#paused = true;
    for (const pair of this.#pairs) for (const s of pair) s.pause();
  }

  resume(): void {
    this.#paused = false;
    for (const pair of this.#pairs) for (const s of pair) s.resume();
  }

  /** Restart: every connection reset, new ones refused until restore. */
  cut(): void {
    this.#cut = true;
    for (const [a, b] of this.#pairs) {
      a.resetAndDestroy();
      b.destroy();
    }
    this.#pairs.clear();
  }

  restore(): void {
    this.#cut = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.#server?.close(() => r()) ?? r());
  }
}
