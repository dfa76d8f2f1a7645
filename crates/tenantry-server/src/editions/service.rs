//! The editions catalog.

use serde::Deserialize;
use serde_json::json;
use tenantry_domain::{Edition, EditionKey, EditionLimits, EventEnvelope, ValidationErrors};
use tenantry_store::{Changes, Constraint, StoreError};

use crate::platform::views::{EditionView, to_json};
use crate::platform::{App, AppError, AppResult, Ctx, Idem, now};

/// `POST /v1/editions` input.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEdition {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub limits: EditionLimits,
}

impl App {
    pub async fn list_editions(&self) -> AppResult<Vec<Edition>> {
        Ok(self.store.editions().list().await?)
    }

    pub async fn get_edition(&self, key: &str) -> AppResult<Edition> {
        let parsed =
            EditionKey::parse(key).map_err(|_| AppError::EditionNotFound(key.to_owned()))?;
        self.store
            .editions()
            .get(&parsed)
            .await?
            .ok_or_else(|| AppError::EditionNotFound(key.to_owned()))
    }

    pub async fn create_edition(
        &self,
        ctx: &Ctx,
        input: NewEdition,
        idem: Idem<'_, Edition>,
    ) -> AppResult<Edition> {
        let mut errors = ValidationErrors::default();
        let key = errors.check("key", EditionKey::parse(&input.key));
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push("name", "must be 1 to 200 characters long");
        }
        if let Some(problem) = tenantry_domain::validation::name_problem(&name) {
            errors.push("name", problem);
        }
        if input
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2000)
        {
            errors.push("description", "must be at most 2000 characters long");
        }
        if let Some(problem) = input
            .description
            .as_deref()
            .and_then(tenantry_domain::validation::text_problem)
        {
            errors.push("description", problem);
        }
        if let Err(e) = input.limits.validate() {
            errors.0.extend(e.0);
        }
        errors.clone().into_result()?;
        let Some(key) = key else {
            return Err(errors.into());
        };

        let edition = Edition {
            key,
            name,
            description: input.description,
            limits: input.limits,
            builtin: false,
            created_at: now(),
        };
        let view = to_json(&EditionView::from(&edition));
        let audit = ctx.audit(
            "edition.create",
            "edition",
            edition.key.to_string(),
            None,
            json!({ "edition": view }),
        );
        let event = EventEnvelope::v1(
            "edition.created.v1",
            edition.key.to_string(),
            None,
            None,
            ctx.trace_id(),
            edition.created_at,
            json!({ "edition": view }),
        );
        let mut changes = Changes::new(audit, event);
        changes.idempotency = idem.map(|f| f(&edition));
        match self.store.editions().insert(&edition, &changes).await {
            Ok(()) => Ok(edition),
            Err(StoreError::Duplicate(Constraint::EditionKey)) => {
                Err(AppError::EditionExists(edition.key.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}
