//! The search conformance suite against a real Elasticsearch 8, when `CHATSYS_TEST_ES_URL`
//! names one (`docker compose up elasticsearch` gives one at http://127.0.0.1:9200). Without
//! it the test says it was skipped: no Elasticsearch can run on the CI machines.

mod suite;

use async_trait::async_trait;
use chatsys_core::ports::SearchIndex;
use chatsys_search::elasticsearch::{ElasticConfig, ElasticIndex};

struct Elastic {
    index: ElasticIndex,
    url: String,
    alias: String,
}

#[async_trait]
impl suite::Harness for Elastic {
    fn index(&self) -> &dyn SearchIndex {
        &self.index
    }

    async fn settle(&self) {
        let refreshed =
            reqwest::Client::new().post(format!("{}/{}/_refresh", self.url, self.alias)).send().await.unwrap();
        assert!(refreshed.status().is_success());
    }
}

async fn open(url: &str, test: &str) -> Elastic {
    let alias = format!("chatsys-test-{test}-{}", chatsys_core::Timestamp::now().as_micros());
    let mut config = ElasticConfig::new(url);
    config.alias = alias.clone();
    Elastic { index: ElasticIndex::connect(config).await.unwrap(), url: url.to_owned(), alias }
}

async fn drop_index(e: &Elastic) {
    let _ = reqwest::Client::new().delete(format!("{}/{}-*", e.url, e.alias)).send().await;
}

macro_rules! run_all {
    ($url:expr; $($name:ident),+ $(,)?) => {
        $(
            let harness = open($url, stringify!($name)).await;
            suite::$name(&harness).await;
            drop_index(&harness).await;
            eprintln!("elasticsearch conformance: {} passed", stringify!($name));
        )+
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_conformance_suite_passes_against_elasticsearch() {
    let Ok(url) = std::env::var("CHATSYS_TEST_ES_URL") else {
        eprintln!(
            "skipped: set CHATSYS_TEST_ES_URL (e.g. http://127.0.0.1:9200) to run the suite against Elasticsearch"
        );
        return;
    };
    crate::every_search_case!(run_all!(&url));
}
