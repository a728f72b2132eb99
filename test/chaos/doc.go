// Command chaos is the black-box fault suite of issue 11 (`make chaos`,
// hack/chaos.sh): it drives the project only through its public API and
// protocol — the HTTP send API, the WebSocket push protocol through
// pkg/client, sync and the unread pull — while it kills and stops the
// processes of a stack of its own.
//
// The stack: Kafka, Cassandra and etcd of hack/deps.sh under
// .run/chaos/deps on ports of their own (hack/chaos.sh starts them fresh
// and stops them on exit), two message and two push processes started here
// (killed with this process: Pdeathsig), and a TCP balancer in this
// process standing for the message tier's Service (round-robin over the
// ready message processes). Faults only hit those: a dependency is
// signalled only when its recorded pid's command line names the suite's
// run directory. The shared servers on 9092/9042/2379 are never touched.
//
// Each scenario: 500 fresh users with two devices each (10 % of them
// offline until the check), 200 messages/s from a random online user's
// device to a random user, each sent until acknowledged with numbered
// attempts (and 3 % sent once more after their ack, as after a lost
// answer); 10 s into the load one fault; once the faulty part is back and
// every tier ready, 10 s more load. Then the offline users log in, every
// device gets 30 s to catch up on its own, syncs once more, and every
// user is read through the API (a full sync from the empty cursor and the
// unread pull). A scenario fails on
//
//   - lost: an acknowledged message missing from the recipient's or the
//     sender's sync, the recipient's unread pull, or any of their devices;
//   - stored twice: one client_msg_id at two seqs in one view;
//   - reordered: one message at different seqs in different views (or at
//     another seq than its first attempt's answer), a message sent after
//     another one of its conversation was acknowledged at a lower seq, a
//     sync page out of seq order within a conversation, a push below a seq
//     already pushed to the device in its conversation;
//   - a retry answered with another msg_id or 409, a rejected event;
//   - a tier not ready 10 s after its dependency was back, or not ready
//     again later (until the checks are done; two failed /readyz rounds in
//     a row, 250 ms apart, as a probe with a failure threshold of 2);
//   - any send attempt refused during a Cassandra outage (the send path
//     touches only Kafka).
//
// It reports, besides: unacknowledged messages (and how many of those were
// stored all the same), refused attempts, redelivered pushes (events pushed
// to a device that already held them: arrivals by push minus new events
// by push), (device, message) pairs still missing before the final sync
// (self-healing delivery, reported, not failing), and recovery times.
//
// The checks can fail: -sabotage N makes every device drop every Nth
// pushed message from its store (the client believes it held it), and
// every scenario then FAILs with those messages lost and unhealed
// (`hack/chaos.sh -scenarios etcd-kill -users 40 -rate 20 -sabotage 50`:
// 7 of 136 lost). An early run also caught the suite's own unread check
// expecting messages its recipients had read by replying.
package main
