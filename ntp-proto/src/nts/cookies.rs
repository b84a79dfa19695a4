//! The client's cookies (RFC 8915 section 6): each is used once, oldest
//! first; every reply brings one back for the one spent and one for each
//! placeholder we sent, so the jar stays full.

use super::ke::{MAX_COOKIES, MAX_COOKIE_LEN};
use std::collections::VecDeque;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieJar {
    cookies: VecDeque<Vec<u8>>,
}

impl CookieJar {
    pub fn new(cookies: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut jar = Self::default();
        for c in cookies {
            jar.add(c);
        }
        jar
    }

    pub fn len(&self) -> usize {
        self.cookies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// The oldest cookie, which the next request spends.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.cookies.pop_front()
    }

    /// Keeps a new cookie; when the jar is full the oldest goes. Empty or
    /// oversized cookies are ignored (false): they could not be sent.
    pub fn add(&mut self, cookie: Vec<u8>) -> bool {
        if cookie.is_empty() || cookie.len() > MAX_COOKIE_LEN {
            return false;
        }
        if self.cookies.len() == MAX_COOKIES {
            self.cookies.pop_front();
        }
        self.cookies.push_back(cookie);
        true
    }

    /// Placeholders the next request should carry after taking its cookie,
    /// so the reply refills the jar to [`MAX_COOKIES`].
    pub fn placeholders_wanted(&self) -> usize {
        MAX_COOKIES.saturating_sub(self.cookies.len() + 1)
    }

    pub fn clear(&mut self) {
        self.cookies.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_first_bounded_and_refilled() {
        let mut jar = CookieJar::new((0..10u8).map(|i| vec![i; 8]));
        assert_eq!(jar.len(), MAX_COOKIES, "extras beyond 8 are dropped");
        assert_eq!(jar.take(), Some(vec![2; 8]), "the oldest two went");
        // One taken, seven left: the reply's own cookie refills the jar.
        assert_eq!(jar.placeholders_wanted(), 0);
        for _ in 0..5 {
            jar.take();
        }
        assert_eq!(jar.len(), 2);
        // Two left after a take: the reply's cookie and five more make eight.
        assert_eq!(jar.placeholders_wanted(), 5);
        assert!(!jar.add(Vec::new()));
        assert!(!jar.add(vec![0; MAX_COOKIE_LEN + 1]));
        assert!(jar.add(vec![0; MAX_COOKIE_LEN]));
        assert_eq!(jar.len(), 3);
        while jar.take().is_some() {}
        assert!(jar.is_empty());
        assert_eq!(jar.placeholders_wanted(), MAX_COOKIES - 1);
    }
}
