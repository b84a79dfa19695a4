//! Resolving sources given by name: `--server time.example.net` stands for
//! every address the name resolves to. Names are resolved by the event
//! loop, not at start-up, so a router that boots before its DNS works still
//! starts (and filters) at once; unresolved names and names whose sources
//! have all gone quiet are retried.

use std::net::IpAddr;

/// All addresses of `name`, canonical (an IPv4-mapped answer is the IPv4
/// address), sorted and deduplicated.
pub async fn resolve(name: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = tokio::net::lookup_host((name, port))
        .await?
        .map(|sa| crate::model::addr::canonical(sa.ip()))
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves() {
        let addrs = resolve("localhost", 123).await.unwrap();
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        assert!(!addrs.is_empty());
    }
}
