// Command source is the source-pg benchmark of issue 3. In one run on the
// machine it measures
//
//   - the Postgres limit: raw logical decoding of a replication slot with
//     pg_recvlogical (pgoutput, proto_version 1) into a file;
//   - the bus limit: `nats bench js pub async` into a file stream of a
//     nats-server started the way Tributary starts its embedded server;
//   - source-pg end to end: pgsource.Source with a real bus.Publisher, from
//     Run until JetStream holds every change;
//
// for N one-row transactions and for N rows in large transactions, with the
// bus fsyncing every write (bus.SyncAlways, the default) and with lazy fsync
// (bus.SyncInterval, nats-server's 2 minutes), and then the commit-to-ack
// latency of source-pg while a writer commits one-row transactions at a fixed
// rate. It prints markdown tables with the ratios of source-pg to the limits
// measured in the same run (the machines are shared and noisy).
//
// Throughput is measured as catch-up over WAL generated beforehand: the slots
// exist before the workload is written, so the writer's speed does not bound
// any reader.
//
// Run it with scripts/bench-source.sh or
//
//	go run ./test/bench/source [-n 1000000] [-quick] [-cpuprofile FILE]
//
// It owns every process and server it starts (a private Postgres cluster,
// embedded nats-servers, pg_recvlogical and nats bench children) and stops
// them on return, on error and on Ctrl-C. It exits non-zero on an error, not
// on a missed target: a miss is reported in the table.
//
// It must never: touch a Postgres cluster or NATS server it did not start,
// or change what it measures (it uses pgsource and bus as production does,
// with their default batch settings).
package main
