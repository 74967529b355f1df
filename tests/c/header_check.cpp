// The header from C++: compiled with -std=c++17 -Wall -Wextra -Werror -pedantic, linked against
// the static library, and run.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "workload_auth.h"

namespace {

struct CredentialsDeleter {
    void operator()(wa_credentials *c) const noexcept { wa_credentials_free(c); }
};
using Credentials = std::unique_ptr<wa_credentials, CredentialsDeleter>;

std::string last_error() {
    std::string message(wa_last_error_message(nullptr, 0), '\0');
    wa_last_error_message(message.data(), message.size());
    message.resize(std::strlen(message.c_str()));
    return message;
}

}  // namespace

int main() {
    wa_credentials *raw = nullptr;
    const wa_result r = wa_credentials_new_from_json(nullptr, &raw);
    Credentials creds(raw);
    if (r != WA_ERR_NULL_POINTER || creds != nullptr) {
        std::fprintf(stderr, "expected WA_ERR_NULL_POINTER, got %s\n", wa_result_name(r));
        return 1;
    }
    if (last_error().find("json") == std::string::npos) {
        std::fprintf(stderr, "unexpected message: %s\n", last_error().c_str());
        return 1;
    }
    std::printf("c++: ok (workload-auth %s)\n", wa_version());
    return 0;
}
