#!/usr/bin/env bash
# it: serial
# The accumulator is killed with SIGKILL at random moments, in the middle
# of batches, while the real poller delivers to-device messages and room
# events: after restarts nothing is lost and nothing is stored twice, and
# the client reads every message exactly once, in order.
CHAOS_TARGET=accumulator exec bash "$(dirname "$0")/t_poller_chaos.sh"
