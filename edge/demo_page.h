// The demo page served at "/" (edge/demo/index.html) and the browser client
// module served at "/roomcast.js" (clients/js/roomcast.js), embedded at build
// time. Static storage: the views stay valid for the life of the process.
#ifndef ROOMCAST_EDGE_DEMO_PAGE_H_
#define ROOMCAST_EDGE_DEMO_PAGE_H_

#include "absl/strings/string_view.h"

namespace roomcast::edge {

absl::string_view DemoPage();
absl::string_view ClientModule();

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_DEMO_PAGE_H_
