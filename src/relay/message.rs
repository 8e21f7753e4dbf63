//! placeholder until the renderer lands
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Blocks,
    Text,
    Workflow,
}
impl Format {
    pub fn for_url(url: &str) -> Format {
        if url.contains("/triggers/") {
            Format::Workflow
        } else {
            Format::Blocks
        }
    }
}
