// The C++ layer (include/workload_auth.hpp) against the emulator, under valgrind:
// RAII handles, std::string results, exceptions and their non-throwing twins, chrono deadlines.
//
//   WA_TEST_PROJECT  the emulator's project (GCE_METADATA_HOST points at the emulator, whose next
//                    token answer is delayed by WA_TEST_DELAY_MS)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "workload_auth.hpp"

#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, \
                         #cond);                                                       \
            std::exit(1);                                                              \
        }                                                                              \
    } while (0)

namespace wa = workload_auth;
using namespace std::chrono_literals;

static std::string env(const char *name) {
    const char *v = std::getenv(name);
    REQUIRE(v != nullptr);
    return v;
}

int main() {
    const auto delay = std::chrono::milliseconds(std::atoll(env("WA_TEST_DELAY_MS").c_str()));

    // Errors as exceptions: code, name, message, transient.
    try {
        (void)wa::credentials::from_file("/nonexistent/wa-cpp/credentials.json");
        REQUIRE(false);
    } catch (const wa::error &e) {
        REQUIRE(e.code() == WA_ERR_IO);
        REQUIRE(std::string(e.name()) == "WA_ERR_IO");
        REQUIRE(std::string(e.what()).find("/nonexistent/wa-cpp/credentials.json") !=
                std::string::npos);
        REQUIRE(!e.transient());
    }
    // ... and without exceptions.
    auto bad = wa::credentials::try_from_json("{\"type\": \"magic\"}");
    REQUIRE(!bad.ok() && !bad);
    REQUIRE(bad.code() == WA_ERR_INVALID_CREDENTIALS);
    REQUIRE(bad.message().find("magic") != std::string::npos);

    wa::credentials creds = wa::credentials::find_default();
    REQUIRE(creds.type() == "metadata_server");
    REQUIRE(creds.project_id() == env("WA_TEST_PROJECT"));
    REQUIRE(!creds.quota_project_id().has_value());

    // The first token answer is slow: a short deadline gives a transient transport error.
    auto late = creds.try_token(100ms);
    REQUIRE(!late.ok());
    REQUIRE(late.code() == WA_ERR_TRANSPORT && late.transient());
    try {
        (void)creds.token(std::chrono::milliseconds(0));
        REQUIRE(false);
    } catch (const wa::error &e) {
        REQUIRE(e.code() == WA_ERR_INVALID_ARGUMENT);
    }

    // A deadline longer than the delay: the token comes.
    wa::access_token token = creds.token(delay * 3);
    REQUIRE(token.token.size() > 10);
    REQUIRE(token.expires_at > std::chrono::system_clock::now() + 50min);
    REQUIRE(creds.token().token == token.token);
    REQUIRE(creds.authorization_header() == "Bearer " + token.token);

    /* No Agent Identity certificate here: tokens are not bound, and no bound token is made. */
    REQUIRE(!creds.is_bound());
    REQUIRE(creds.try_bound_token().code() == WA_ERR_INVALID_ARGUMENT);

    auto scoped = creds.try_token(std::string_view("openid"));
    REQUIRE(scoped.ok() && scoped.value().token != token.token);
    REQUIRE(creds.try_token(std::string_view(" , ")).code() == WA_ERR_INVALID_ARGUMENT);

    const std::string id = creds.id_token("https://backend.example", 10s);
    REQUIRE(id.find('.') != std::string::npos);
    REQUIRE(creds.try_id_token("").code() == WA_ERR_INVALID_ARGUMENT);

    // Downscoped tokens from these credentials: minted client-side, a new one each time; a
    // boundary without rules is refused. Regional access boundaries are off: no header.
    const std::string sts = "http://" + std::string(env("GCE_METADATA_HOST")) + "/v1/token";
    const std::string boundary =
        "{\"accessBoundaryRules\": [{\"availableResource\": "
        "\"//storage.googleapis.com/projects/_/buckets/b\", "
        "\"availablePermissions\": [\"inRole:roles/storage.objectViewer\"]}]}";
    wa::downscoped minted = wa::downscoped::create(creds, boundary, true, sts);
    const wa::access_token narrow = minted.token();
    REQUIRE(narrow.token != minted.token().token && narrow.token != token.token);
    REQUIRE(narrow.expires_at > std::chrono::system_clock::now() + 30min);
    REQUIRE(wa::downscoped::try_create(creds, "{\"accessBoundaryRules\": []}").code() ==
            WA_ERR_INVALID_ARGUMENT);
    REQUIRE(!creds.allowed_locations().has_value());

    // Handles move; the moved-from one is empty and freeing it is a no-op.
    wa::credentials moved = std::move(creds);
    REQUIRE(moved.get() != nullptr);
    moved.invalidate();
    REQUIRE(moved.token().token != token.token);

    std::printf("c++ api: ok\n");
    return 0;
}
