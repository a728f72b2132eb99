// Package testdeps tells tests where the real dependency servers are.
//
// The servers are started by hack/deps.sh (make test and make deps-up do it);
// their endpoints come from the environment with the defaults of hack/deps.sh.
// A test that needs a server that does not answer is skipped on a laptop, but
// fails under CI=true: in CI a missing dependency is a broken build, never a
// silent pass.
//
// PrivateKafka and PrivateCassandra start a server of the test's own
// through hack/deps.sh (free ports, data under t.TempDir), for tests that
// must stop or restart a server: the shared ones are never stopped.
package testdeps
