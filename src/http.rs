//! The HTTP client of every command (and of the tests' stand-ins): reqwest on rustls with the
//! *ring* crypto provider, the only one compiled in (aws-lc's C library would add about 2 MB
//! of code to every process, and minutes to a cold build). reqwest is built without a
//! provider of its own, so the process-wide default is installed here, once, before the
//! first client is made.

/// A client builder with the crypto provider in place.
pub fn builder() -> reqwest::ClientBuilder {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // (Already installed, by this or another library: that one is used.)
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// A client with reqwest's defaults.
pub fn client() -> reqwest::Client {
    builder()
        .build()
        .expect("an HTTP client with default settings")
}

/// `reqwest::get`, with the crypto provider in place.
pub async fn get<U: reqwest::IntoUrl>(url: U) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}
