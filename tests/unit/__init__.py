"""Fast tests of pure logic: no broker, no network, no real clock in the code under test."""
