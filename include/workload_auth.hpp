/*
 * workload-auth for C++: a header-only layer over the C API of workload_auth.h.
 *
 *  - Handles own their C object (RAII, move-only): workload_auth::credentials,
 *    workload_auth::workload_identity.
 *  - Results are std::string / std::optional<std::string>; tokens are zeroed by the library
 *    when their C copy is released, the std::string copy is the caller's to protect.
 *  - Failures throw workload_auth::error (the wa_result code, whether a retry may help, and the
 *    library's message). Every throwing call has a try_* twin that returns a
 *    workload_auth::result<T> instead and throws nothing but std::bad_alloc.
 *  - Deadlines are std::chrono durations (a zero or negative one is WA_ERR_INVALID_ARGUMENT).
 *
 * Needs C++17 (std::optional, std::string_view). Link as for the C API:
 *   c++ -std=c++17 app.cpp $(pkg-config --cflags --libs workload_auth)
 */
#ifndef WORKLOAD_AUTH_HPP
#define WORKLOAD_AUTH_HPP

#if __cplusplus < 201703L && (!defined(_MSVC_LANG) || _MSVC_LANG < 201703L)
#error "workload_auth.hpp needs C++17 or later; from C++11, use workload_auth.h directly"
#endif

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "workload_auth.h"

namespace workload_auth {

namespace detail {

struct string_deleter {
    void operator()(char *s) const noexcept { wa_string_free(s); }
};
using owned_string = std::unique_ptr<char, string_deleter>;

struct credentials_deleter {
    void operator()(wa_credentials *c) const noexcept { wa_credentials_free(c); }
};
struct downscoped_deleter {
    void operator()(wa_downscoped *d) const noexcept { wa_downscoped_free(d); }
};
struct identity_deleter {
    void operator()(wa_workload_identity *i) const noexcept { wa_workload_identity_free(i); }
};

/* The calling thread's last error message (empty when there is none). */
inline std::string last_error_message() {
    const size_t n = wa_last_error_message(nullptr, 0);
    if (n == 0) {
        return std::string();
    }
    std::string message(n, '\0');
    wa_last_error_message(&message[0], message.size());
    message.resize(n - 1);
    return message;
}

/* A C string of the library as a std::string (empty for NULL), released either way. */
inline std::string take(char *s) {
    owned_string owned(s);
    return owned ? std::string(owned.get()) : std::string();
}

inline std::optional<std::string> take_optional(char *s) {
    owned_string owned(s);
    if (!owned) {
        return std::nullopt;
    }
    return std::string(owned.get());
}

/* Milliseconds for the C API: negative and zero stay 0 (refused by the library), longer than
 * the C type holds is capped. */
template <class Rep, class Period>
uint32_t to_timeout_ms(std::chrono::duration<Rep, Period> timeout) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    if (ms <= 0) {
        // A positive duration shorter than 1 ms still means "a deadline", not "none".
        return timeout > std::chrono::duration<Rep, Period>::zero() ? 1u : 0u;
    }
    if (static_cast<unsigned long long>(ms) > std::numeric_limits<uint32_t>::max()) {
        return std::numeric_limits<uint32_t>::max();
    }
    return static_cast<uint32_t>(ms);
}

}  // namespace detail

/* A failed call: its code, whether retrying later may help, and the library's message (which
 * never contains a token or key). */
class error : public std::runtime_error {
  public:
    error(wa_result code, const std::string &message, bool transient)
        : std::runtime_error(message), code_(code), transient_(transient) {}

    /* The error of the calling thread's last failed call, which returned `code`. */
    static error last(wa_result code) {
        return error(code, detail::last_error_message(), wa_last_error_is_transient());
    }

    wa_result code() const noexcept { return code_; }
    /* "WA_ERR_TRANSPORT" and so on. */
    const char *name() const noexcept { return wa_result_name(code_); }
    bool transient() const noexcept { return transient_; }

  private:
    wa_result code_;
    bool transient_;
};

/* A value or the error that prevented it, for code that does not use exceptions. */
template <class T>
class result {
  public:
    result(T value) : value_(std::move(value)), code_(WA_OK), transient_(false) {}
    result(wa_result code, std::string message, bool transient)
        : code_(code), message_(std::move(message)), transient_(transient) {}

    bool ok() const noexcept { return code_ == WA_OK; }
    explicit operator bool() const noexcept { return ok(); }
    wa_result code() const noexcept { return code_; }
    const std::string &message() const noexcept { return message_; }
    bool transient() const noexcept { return transient_; }

    /* The value; throws workload_auth::error when there is none. */
    T &value() & {
        if (!ok()) {
            throw error(code_, message_, transient_);
        }
        return *value_;
    }
    T &&value() && {
        if (!ok()) {
            throw error(code_, message_, transient_);
        }
        return std::move(*value_);
    }

  private:
    std::optional<T> value_;
    wa_result code_;
    std::string message_;
    bool transient_;
};

namespace detail {

template <class T>
result<T> failure(wa_result code) {
    return result<T>(code, last_error_message(), wa_last_error_is_transient());
}

inline void check(wa_result code) {
    if (code != WA_OK) {
        throw error::last(code);
    }
}

}  // namespace detail

/* An OAuth access token and when it expires. */
struct access_token {
    std::string token;
    std::chrono::system_clock::time_point expires_at;
};

/* An Agent Identity certificate-bound access token together with the certificate it is bound to:
 * present `certificate_chain` (PEM, leaf first; the key stays in its file) over mutual TLS with
 * the token, nothing else. */
struct bound_access_token {
    std::string token;
    std::string certificate_chain;
    std::string fingerprint;
    std::chrono::system_clock::time_point expires_at;
};

/* Application Default Credentials (or explicit ones) with their token caches. Thread-safe. */
class credentials {
  public:
    /* ADC's search (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server). */
    static credentials find_default() { return try_find_default().value(); }
    static result<credentials> try_find_default() {
        wa_credentials *c = nullptr;
        const wa_result r = wa_credentials_new_default(&c);
        return make(r, c);
    }

    /* ADC's search, reaching the metadata server over `mode` ("none", "default", "strict": mTLS
     * only) with root.crt and client.key from `dir` (default: WORKLOAD_AUTH_MDS_MTLS_DIR, else
     * /run/google-mds-mtls). wa_credentials_explain_json shows the transport chosen and why. */
    static credentials find_default_mds_mtls(const std::string &mode,
                                             const std::optional<std::string> &dir = std::nullopt) {
        return try_find_default_mds_mtls(mode, dir).value();
    }
    static result<credentials> try_find_default_mds_mtls(
        const std::string &mode, const std::optional<std::string> &dir = std::nullopt) {
        wa_credentials *c = nullptr;
        const wa_result r = wa_credentials_new_default_mds_mtls(
            mode.c_str(), dir ? dir->c_str() : nullptr, &c);
        return make(r, c);
    }

    /* Any credentials file. For a file from a source you do not control, use from_file_typed. */
    static credentials from_file(const std::string &path) { return try_from_file(path).value(); }
    static result<credentials> try_from_file(const std::string &path) {
        wa_credentials *c = nullptr;
        const wa_result r = wa_credentials_new_from_file(path.c_str(), &c);
        return make(r, c);
    }

    /* A credentials file of one of `allowed_types` ("service_account,authorized_user"). */
    static credentials from_file_typed(const std::string &path, const std::string &allowed_types) {
        return try_from_file_typed(path, allowed_types).value();
    }
    static result<credentials> try_from_file_typed(const std::string &path,
                                                   const std::string &allowed_types) {
        wa_credentials *c = nullptr;
        const wa_result r =
            wa_credentials_new_from_file_typed(path.c_str(), allowed_types.c_str(), &c);
        return make(r, c);
    }

    /* The JSON text of a credentials file. */
    static credentials from_json(const std::string &json) { return try_from_json(json).value(); }
    static result<credentials> try_from_json(const std::string &json) {
        wa_credentials *c = nullptr;
        const wa_result r = wa_credentials_new_from_json(json.c_str(), &c);
        return make(r, c);
    }

    /* An access token for the default scopes, or for `scopes` (comma- or space-separated). */
    access_token token(std::optional<std::string_view> scopes = std::nullopt) const {
        return try_token(scopes).value();
    }
    result<access_token> try_token(std::optional<std::string_view> scopes = std::nullopt) const {
        const std::string list = scopes ? std::string(*scopes) : std::string();
        char *raw = nullptr;
        int64_t expires = 0;
        const wa_result r = wa_credentials_access_token(
            handle_.get(), scopes ? list.c_str() : nullptr, &raw, &expires);
        return make_token(r, raw, expires);
    }

    /* Whether tokens are bound to an Agent Identity workload certificate; then token() fails and
     * bound_token() gives the token with its certificate. */
    bool is_bound() const {
        bool bound = false;
        detail::check(wa_credentials_is_bound(handle_.get(), &bound));
        return bound;
    }

    /* A certificate-bound token with its certificate (see wa_credentials_bound_access_token). */
    bound_access_token bound_token() const { return try_bound_token().value(); }
    result<bound_access_token> try_bound_token() const {
        char *token = nullptr, *chain = nullptr, *fingerprint = nullptr;
        int64_t expires = 0;
        const wa_result r = wa_credentials_bound_access_token(handle_.get(), &token, &chain,
                                                              &fingerprint, &expires);
        if (r != WA_OK) {
            return detail::failure<bound_access_token>(r);
        }
        bound_access_token t{detail::take(token), detail::take(chain), detail::take(fingerprint),
                             std::chrono::system_clock::time_point(std::chrono::seconds(expires))};
        return t;
    }

    /* The same, returning WA_ERR_TRANSPORT (transient) when no token came within `timeout`. */
    template <class Rep, class Period>
    access_token token(std::chrono::duration<Rep, Period> timeout,
                       std::optional<std::string_view> scopes = std::nullopt) const {
        return try_token(timeout, scopes).value();
    }
    template <class Rep, class Period>
    result<access_token> try_token(std::chrono::duration<Rep, Period> timeout,
                                   std::optional<std::string_view> scopes = std::nullopt) const {
        const std::string list = scopes ? std::string(*scopes) : std::string();
        char *raw = nullptr;
        int64_t expires = 0;
        const wa_result r = wa_credentials_access_token_timeout(
            handle_.get(), scopes ? list.c_str() : nullptr, detail::to_timeout_ms(timeout), &raw,
            &expires);
        return make_token(r, raw, expires);
    }

    /* An OpenID Connect ID token for `audience`. */
    std::string id_token(const std::string &audience) const {
        return try_id_token(audience).value();
    }
    result<std::string> try_id_token(const std::string &audience) const {
        char *raw = nullptr;
        const wa_result r = wa_credentials_id_token(handle_.get(), audience.c_str(), &raw);
        return make_string(r, raw);
    }
    template <class Rep, class Period>
    std::string id_token(const std::string &audience,
                         std::chrono::duration<Rep, Period> timeout) const {
        return try_id_token(audience, timeout).value();
    }
    template <class Rep, class Period>
    result<std::string> try_id_token(const std::string &audience,
                                     std::chrono::duration<Rep, Period> timeout) const {
        char *raw = nullptr;
        const wa_result r = wa_credentials_id_token_timeout(
            handle_.get(), audience.c_str(), detail::to_timeout_ms(timeout), &raw);
        return make_string(r, raw);
    }

    /* "Bearer <token>", the value of the Authorization header. */
    std::string authorization_header() const {
        char *raw = nullptr;
        detail::check(wa_credentials_authorization_header(handle_.get(), &raw));
        return detail::take(raw);
    }

    /* The project id, when anything knows it (may ask the metadata server the first time). */
    std::optional<std::string> project_id() const {
        char *raw = nullptr;
        detail::check(wa_credentials_project_id(handle_.get(), &raw));
        return detail::take_optional(raw);
    }

    std::optional<std::string> quota_project_id() const {
        char *raw = nullptr;
        detail::check(wa_credentials_quota_project_id(handle_.get(), &raw));
        return detail::take_optional(raw);
    }

    /* "metadata_server", "service_account", ... */
    std::string type() const {
        const char *t = wa_credentials_type(handle_.get());
        return t ? std::string(t) : std::string();
    }

    /* The x-allowed-locations header value (regional access boundary) for a request to `url`
     * (nullopt: any Google API), or nullopt when none is to be sent. */
    std::optional<std::string> allowed_locations(
        std::optional<std::string_view> url = std::nullopt) const {
        const std::string u = url ? std::string(*url) : std::string();
        char *raw = nullptr;
        detail::check(
            wa_credentials_allowed_locations(handle_.get(), url ? u.c_str() : nullptr, &raw));
        return detail::take_optional(raw);
    }

    /* Forgets every cached token. */
    void invalidate() const { detail::check(wa_credentials_invalidate(handle_.get())); }

    /* The C handle, for calls this header does not wrap; still owned by this object. */
    wa_credentials *get() const noexcept { return handle_.get(); }

  private:
    explicit credentials(wa_credentials *c) : handle_(c) {}

    static result<credentials> make(wa_result r, wa_credentials *c) {
        if (r != WA_OK) {
            return detail::failure<credentials>(r);
        }
        return credentials(c);
    }

    static result<access_token> make_token(wa_result r, char *raw, int64_t expires) {
        if (r != WA_OK) {
            return detail::failure<access_token>(r);
        }
        access_token t{detail::take(raw), std::chrono::system_clock::time_point(
                                              std::chrono::seconds(expires))};
        return t;
    }

    static result<std::string> make_string(wa_result r, char *raw) {
        if (r != WA_OK) {
            return detail::failure<std::string>(r);
        }
        return detail::take(raw);
    }

    std::unique_ptr<wa_credentials, detail::credentials_deleter> handle_;
};

/* Tokens limited to a credential access boundary (JSON, as the Security Token Service takes it),
 * made from source credentials: server-side (one exchange per token) or client-side (minted
 * locally from an intermediary token). Thread-safe. */
class downscoped {
  public:
    static downscoped create(const credentials &source, const std::string &boundary_json,
                             bool client_side = false,
                             std::optional<std::string> sts_endpoint = std::nullopt) {
        return try_create(source, boundary_json, client_side, std::move(sts_endpoint)).value();
    }
    static result<downscoped> try_create(const credentials &source,
                                         const std::string &boundary_json,
                                         bool client_side = false,
                                         std::optional<std::string> sts_endpoint = std::nullopt) {
        wa_downscoped *raw = nullptr;
        const wa_result r =
            wa_downscoped_new(source.get(), boundary_json.c_str(),
                              sts_endpoint ? sts_endpoint->c_str() : nullptr, client_side, &raw);
        if (r != WA_OK) {
            return detail::failure<downscoped>(r);
        }
        return downscoped(raw);
    }

    /* A downscoped access token. */
    access_token token() const { return try_token().value(); }
    result<access_token> try_token() const {
        char *raw = nullptr;
        int64_t expires = 0;
        const wa_result r = wa_downscoped_access_token(handle_.get(), &raw, &expires);
        if (r != WA_OK) {
            return detail::failure<access_token>(r);
        }
        access_token t{detail::take(raw), std::chrono::system_clock::time_point(
                                              std::chrono::seconds(expires))};
        return t;
    }

    /* The C handle; still owned by this object. */
    wa_downscoped *get() const noexcept { return handle_.get(); }

  private:
    explicit downscoped(wa_downscoped *d) : handle_(d) {}

    std::unique_ptr<wa_downscoped, detail::downscoped_deleter> handle_;
};

/* This workload's SPIFFE identity, from a credentials directory in any layout (NULL:
 * SPIFFE_CREDENTIAL_FOLDER when set, else the default one). */
class workload_identity {
  public:
    static workload_identity load(std::optional<std::string> dir = std::nullopt) {
        return try_load(std::move(dir)).value();
    }
    static result<workload_identity> try_load(std::optional<std::string> dir = std::nullopt) {
        wa_workload_identity *raw = nullptr;
        const wa_result r = wa_workload_identity_load(dir ? dir->c_str() : nullptr, &raw);
        if (r != WA_OK) {
            return detail::failure<workload_identity>(r);
        }
        return workload_identity(raw);
    }

    /* "spiffe://trust.domain/path" */
    std::string spiffe_id() const {
        char *raw = nullptr;
        detail::check(wa_workload_identity_spiffe_id(handle_.get(), &raw));
        return detail::take(raw);
    }

    /* The credentials layout found: "gke", "combined", "spiffe-fs" or "no-key" (empty for an
     * identity from the Workload API). */
    std::string layout() const {
        const char *name = wa_workload_identity_layout(handle_.get());
        return name ? std::string(name) : std::string();
    }

    /* False when the platform keeps the private key hidden: no mTLS can be made with it. */
    bool has_private_key() const noexcept {
        return wa_workload_identity_has_private_key(handle_.get()) != 0;
    }

    wa_workload_identity *get() const noexcept { return handle_.get(); }

  private:
    explicit workload_identity(wa_workload_identity *i) : handle_(i) {}
    std::unique_ptr<wa_workload_identity, detail::identity_deleter> handle_;
};

}  // namespace workload_auth

#endif /* WORKLOAD_AUTH_HPP */
