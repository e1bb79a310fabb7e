//! GitHub: endpoint defaults for github.com and GitHub Enterprise Server.
//!
//! GitHub's token endpoint answers JSON when asked (`Accept: application/json`, which the
//! `oauth2` crate sends) but reports errors with status 200; `http` turns those into 400s.
//! The user id is the numeric `id` of `GET /user`.

use url::Url;

pub const DEFAULT_WEB_URL: &str = "https://github.com";
pub const DEFAULT_API_URL: &str = "https://api.github.com";
pub const SUBJECT_FIELD: &str = "id";

/// Authorize, token and user endpoints from the web and API base URLs.
pub fn endpoints(web_url: &Url, api_url: &Url) -> Result<(Url, Url, Url), url::ParseError> {
    let web = with_trailing_slash(web_url);
    let api = with_trailing_slash(api_url);
    Ok((web.join("login/oauth/authorize")?, web.join("login/oauth/access_token")?, api.join("user")?))
}

pub fn with_trailing_slash(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_github_com_and_enterprise_endpoints() {
        let (a, t, u) =
            endpoints(&Url::parse(DEFAULT_WEB_URL).unwrap(), &Url::parse(DEFAULT_API_URL).unwrap()).unwrap();
        assert_eq!(a.as_str(), "https://github.com/login/oauth/authorize");
        assert_eq!(t.as_str(), "https://github.com/login/oauth/access_token");
        assert_eq!(u.as_str(), "https://api.github.com/user");
        let (a, _, u) = endpoints(
            &Url::parse("https://ghe.corp.example").unwrap(),
            &Url::parse("https://ghe.corp.example/api/v3").unwrap(),
        )
        .unwrap();
        assert_eq!(a.as_str(), "https://ghe.corp.example/login/oauth/authorize");
        assert_eq!(u.as_str(), "https://ghe.corp.example/api/v3/user");
    }
}
