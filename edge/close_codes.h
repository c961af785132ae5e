// How connections end, as the browser sees it: the reconnect rule of each
// DisconnectCode, read from the `(reconnect)` option that the proto puts on
// every value (proto/roomcast/v1/roomcast.proto, the one table of the rule),
// and the Disconnect frame the sessions send before closing.
//
// Pure functions over the generated descriptor: no state, safe from any
// thread. Unknown numbers (not a DisconnectCode value) do not reconnect.
#ifndef ROOMCAST_EDGE_CLOSE_CODES_H_
#define ROOMCAST_EDGE_CLOSE_CODES_H_

#include <string>

#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {

// Whether a client closed with `code` reconnects (and resumes) by itself:
// the value's `(reconnect)` option; false for numbers that are not a value.
bool Reconnects(int code);

// The ServerFrame that tells a client why it is being closed.
v1::ServerFrame DisconnectFrame(v1::DisconnectCode code, const std::string& reason);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_CLOSE_CODES_H_
