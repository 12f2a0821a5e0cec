//! Reading the chain: every query path with its typed answer.
//!
//! [`Query`] is implemented by both transports, a CometBFT node's RPC
//! ([`crate::ChainClient`]) and a gateway ([`crate::Gateway`]). Each only
//! says how to get a raw [`QueryAnswer`]; the typed calls (`account`, `job`,
//! `jobs`, ...) are built once, here, on the structs of
//! [`compute_proto::views`] that the chain itself serialises, so a renamed
//! field is a compile error rather than a silent default.

use std::future::Future;

use compute_proto::views::{
    AccountView, AssignmentsView, CompletionView, CompletionsPage, JobView, JobsPage, ModuleView,
    NonceView, ReputationView, StatsView, TaskView, WorkerListing, WorkerView, WorkersPage,
};
use compute_proto::{pb, AccountId, Code, JobId, JobStatus, ModuleId};
use serde::de::DeserializeOwned;

use crate::error::ClientError;

/// The most records one page of a listing holds (the chain's `MAX_PAGE`).
pub const PAGE_LIMIT_MAX: u32 = compute_proto::limits::QUERY_PAGE_ENTRIES_MAX;
/// The most pages a "read everything" call reads. A listing is bounded by
/// the chain's own limits (`max_tasks_per_job`, `max_workers`); this bounds
/// the loop even against a node that always answers a full page.
pub const PAGES_MAX: u32 = 10_000;

/// A query's answer as the node sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryAnswer {
    /// The ABCI code: 0, or one of [`Code`] (100 to 103 for queries).
    pub code: u32,
    /// The chain's explanation when the code is not 0.
    pub log: String,
    /// The answer's JSON bytes.
    pub value: Vec<u8>,
    /// The height the answer was read at.
    pub height: i64,
}

impl QueryAnswer {
    /// The value of a successful answer, or the chain's refusal of `path`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`], [`ClientError::QueryRefused`] or
    /// [`ClientError::UnknownCode`] when the code is not 0.
    pub fn into_value(self, path: &str) -> Result<Vec<u8>, ClientError> {
        match Code::from_u32(self.code) {
            Some(Code::Ok) => Ok(self.value),
            Some(Code::NotFound) => Err(ClientError::NotFound {
                path: path.to_owned(),
                log: self.log,
            }),
            Some(code) => Err(ClientError::QueryRefused {
                path: path.to_owned(),
                code,
                log: self.log,
            }),
            None => Err(ClientError::UnknownCode {
                what: format!("query {path}"),
                code: self.code,
                log: self.log,
            }),
        }
    }
}

/// Parses the JSON answer to `path` as `T`.
///
/// # Errors
/// [`ClientError::BadAnswer`] when it is not the expected JSON.
pub fn parse<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::BadAnswer {
        what: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The nonce to sign an account's next transaction with, and where it
/// came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NextNonce {
    /// The nonce to sign with.
    pub nonce: u64,
    /// The account's next nonce as of the last block.
    pub committed: u64,
    /// Whether `nonce` counts the answering node's mempool (`/nonce`);
    /// false when the node is older than that query and only the committed
    /// nonce (`/account`) was known.
    pub counts_mempool: bool,
}

/// Which tasks `/job/<id>` answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobTasks {
    /// None: the job's terms and progress only (`?tasks=false`).
    Without,
    /// Every task (the chain bounds them by `max_tasks_per_job`).
    All,
    /// A page of at most `limit` tasks, after task index `after`.
    Page {
        /// The last index of the previous page (the view's `next`).
        after: Option<u32>,
        /// Tasks in the page, 1 to [`PAGE_LIMIT_MAX`].
        limit: u32,
    },
}

/// Which jobs `/jobs` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobsFilter {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only this requester's.
    pub master: Option<AccountId>,
    /// Jobs in the page (the chain's default, 50, when `None`).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<JobId>,
}

/// Whose completion records `/completions` lists, and from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionsOf {
    /// A job's, after task index `after`.
    Job {
        /// The job.
        job: JobId,
        /// The last task index of the previous page.
        after: Option<u32>,
    },
    /// A worker's, after `(job, task)`.
    Worker {
        /// The worker.
        worker: AccountId,
        /// The last record of the previous page.
        after: Option<(JobId, u32)>,
    },
}

/// The path of `/job/<id>` with `tasks`.
#[must_use]
pub fn job_path(id: &JobId, tasks: JobTasks) -> String {
    match tasks {
        JobTasks::Without => format!("/job/{id}?tasks=false"),
        JobTasks::All => format!("/job/{id}"),
        JobTasks::Page { after: None, limit } => format!("/job/{id}?limit={limit}"),
        JobTasks::Page {
            after: Some(after),
            limit,
        } => format!("/job/{id}?after={after}&limit={limit}"),
    }
}

/// The path of `/jobs` with `filter`.
#[must_use]
pub fn jobs_path(filter: &JobsFilter) -> String {
    let mut args = Vec::new();
    if let Some(status) = filter.status {
        args.push(format!("status={status}"));
    }
    if let Some(master) = &filter.master {
        args.push(format!("master={master}"));
    }
    if let Some(limit) = filter.limit {
        args.push(format!("limit={limit}"));
    }
    if let Some(after) = &filter.after {
        args.push(format!("after={after}"));
    }
    if args.is_empty() {
        "/jobs".to_owned()
    } else {
        format!("/jobs?{}", args.join("&"))
    }
}

/// The path of `/completions` for `of`, `limit` records.
#[must_use]
pub fn completions_path(of: &CompletionsOf, limit: u32) -> String {
    match of {
        CompletionsOf::Job { job, after: None } => format!("/completions?job={job}&limit={limit}"),
        CompletionsOf::Job {
            job,
            after: Some(after),
        } => format!("/completions?job={job}&limit={limit}&after={after}"),
        CompletionsOf::Worker {
            worker,
            after: None,
        } => format!("/completions?worker={worker}&limit={limit}"),
        CompletionsOf::Worker {
            worker,
            after: Some((job, task)),
        } => format!("/completions?worker={worker}&limit={limit}&after={job}:{task}"),
    }
}

/// The path of `/workers`, `limit` workers after `after`.
#[must_use]
pub fn workers_path(after: Option<&AccountId>, limit: u32) -> String {
    match after {
        Some(after) => format!("/workers?limit={limit}&after={after}"),
        None => format!("/workers?limit={limit}"),
    }
}

/// Reads the chain's queries. Implementors supply [`Query::query_answer`];
/// every typed call is built on it.
pub trait Query: Sync {
    /// Runs the query `path` and returns the node's answer, whatever its code.
    ///
    /// # Errors
    /// Transport failures only; a refusal is an answer with a code.
    fn query_answer(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<QueryAnswer, ClientError>> + Send;

    /// Runs the query `path` and returns its JSON bytes.
    ///
    /// # Errors
    /// Transport failures, and the chain's refusal as
    /// [`QueryAnswer::into_value`] reports it.
    fn query_raw(&self, path: &str) -> impl Future<Output = Result<Vec<u8>, ClientError>> + Send {
        async move { self.query_answer(path).await?.into_value(path) }
    }

    /// Runs the query `path` and parses its JSON answer as `T`.
    ///
    /// # Errors
    /// As [`Query::query_raw`], and [`ClientError::BadAnswer`].
    fn query<T: DeserializeOwned + Send>(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<T, ClientError>> + Send {
        async move { parse(path, &self.query_raw(path).await?) }
    }

    /// `/account/<id>`: balance and next nonce (zero for a key never seen).
    ///
    /// # Errors
    /// As [`Query::query`].
    fn account(
        &self,
        id: &AccountId,
    ) -> impl Future<Output = Result<AccountView, ClientError>> + Send {
        let path = format!("/account/{id}");
        async move { self.query(&path).await }
    }

    /// The nonce the next transaction of `id` must carry, as of the last block.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn next_nonce(&self, id: &AccountId) -> impl Future<Output = Result<u64, ClientError>> + Send {
        let account = self.account(id);
        async move { Ok(account.await?.nonce) }
    }

    /// `/nonce/<id>`: the account's next nonce as of the last block and the
    /// one that counts the transactions the node's mempool holds of it.
    ///
    /// # Errors
    /// As [`Query::query`]; a node older than this query refuses it with
    /// [`Code::UnknownQuery`] (see [`Query::pending_nonce`]).
    fn nonce(&self, id: &AccountId) -> impl Future<Output = Result<NonceView, ClientError>> + Send {
        let path = format!("/nonce/{id}");
        async move { self.query(&path).await }
    }

    /// The nonce the next transaction of `id` sent to this node should
    /// carry: `/nonce`'s `pending_nonce`, which counts the transactions
    /// the node accepted into its mempool; from a node that does not serve
    /// `/nonce` (it answers [`Code::UnknownQuery`]), `/account`'s committed
    /// nonce, with [`NextNonce::counts_mempool`] false.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn pending_nonce(
        &self,
        id: &AccountId,
    ) -> impl Future<Output = Result<NextNonce, ClientError>> + Send {
        let id = *id;
        async move {
            let path = format!("/nonce/{id}");
            let answer = self.query_answer(&path).await?;
            if answer.code == Code::UnknownQuery.value() {
                let committed = self.account(&id).await?.nonce;
                return Ok(NextNonce {
                    nonce: committed,
                    committed,
                    counts_mempool: false,
                });
            }
            let view: NonceView = parse(&path, &answer.into_value(&path)?)?;
            Ok(NextNonce {
                nonce: view.pending_nonce.max(view.nonce),
                committed: view.nonce,
                counts_mempool: true,
            })
        }
    }

    /// `/params`: the chain's parameters.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn params(&self) -> impl Future<Output = Result<pb::Params, ClientError>> + Send {
        self.query("/params")
    }

    /// `/stats`: height, app hash, chain id and chain-wide counters.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn stats(&self) -> impl Future<Output = Result<StatsView, ClientError>> + Send {
        self.query("/stats")
    }

    /// `/module/<id>`: a stored module's metadata, without its code.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when no such module is stored; as [`Query::query`].
    fn module(
        &self,
        id: &ModuleId,
    ) -> impl Future<Output = Result<ModuleView, ClientError>> + Send {
        let path = format!("/module/{id}");
        async move { self.query(&path).await }
    }

    /// `/module/<id>?code=true`: a stored module with its code.
    ///
    /// # Errors
    /// As [`Query::module`].
    fn module_code(
        &self,
        id: &ModuleId,
    ) -> impl Future<Output = Result<ModuleView, ClientError>> + Send {
        let path = format!("/module/{id}?code=true");
        async move { self.query(&path).await }
    }

    /// `/worker/<id>`: a registered worker.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when the key is not a worker; as [`Query::query`].
    fn worker(
        &self,
        id: &AccountId,
    ) -> impl Future<Output = Result<WorkerView, ClientError>> + Send {
        let path = format!("/worker/{id}");
        async move { self.query(&path).await }
    }

    /// `/worker/<id>/assignments`: the tasks a worker holds now.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn assignments(
        &self,
        id: &AccountId,
    ) -> impl Future<Output = Result<AssignmentsView, ClientError>> + Send {
        let path = format!("/worker/{id}/assignments");
        async move { self.query(&path).await }
    }

    /// `/workers`: a page of registered workers in key order.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn workers(
        &self,
        after: Option<&AccountId>,
        limit: u32,
    ) -> impl Future<Output = Result<WorkersPage, ClientError>> + Send {
        let path = workers_path(after, limit);
        async move { self.query(&path).await }
    }

    /// Every registered worker, a page of [`PAGE_LIMIT_MAX`] at a time (at
    /// most [`PAGES_MAX`] pages).
    ///
    /// # Errors
    /// As [`Query::query`].
    fn all_workers(&self) -> impl Future<Output = Result<Vec<WorkerListing>, ClientError>> + Send {
        async move {
            let mut workers = Vec::new();
            let mut after: Option<AccountId> = None;
            for _ in 0..PAGES_MAX {
                let page = self.workers(after.as_ref(), PAGE_LIMIT_MAX).await?;
                workers.extend(page.workers);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            Ok(workers)
        }
    }

    /// `/job/<id>`: a job's terms, progress and the tasks `tasks` names.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when no such job exists; as [`Query::query`].
    fn job(
        &self,
        id: &JobId,
        tasks: JobTasks,
    ) -> impl Future<Output = Result<JobView, ClientError>> + Send {
        let path = job_path(id, tasks);
        async move { self.query(&path).await }
    }

    /// `/job/<id>` with task `index` alone: the job's terms and that task
    /// (with its completion record, once settled).
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when no such job exists,
    /// [`ClientError::BadAnswer`] when the answer lacks the task; as
    /// [`Query::query`].
    fn job_task(
        &self,
        id: &JobId,
        index: u32,
    ) -> impl Future<Output = Result<(JobView, TaskView), ClientError>> + Send {
        let page = self.job(
            id,
            JobTasks::Page {
                after: index.checked_sub(1),
                limit: 1,
            },
        );
        let id = *id;
        async move {
            let mut view = page.await?;
            let task = view.tasks.as_mut().and_then(|tasks| {
                let position = tasks.iter().position(|t| t.index == index)?;
                Some(tasks.swap_remove(position))
            });
            let task = task.ok_or_else(|| ClientError::BadAnswer {
                what: format!("/job/{id}"),
                reason: format!("the answer holds no task {index}"),
            })?;
            Ok((view, task))
        }
    }

    /// `/jobs`: a page of jobs in id order.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn jobs(
        &self,
        filter: &JobsFilter,
    ) -> impl Future<Output = Result<JobsPage, ClientError>> + Send {
        let path = jobs_path(filter);
        async move { self.query(&path).await }
    }

    /// `/completions`: a page of completion records.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn completions(
        &self,
        of: &CompletionsOf,
        limit: u32,
    ) -> impl Future<Output = Result<CompletionsPage, ClientError>> + Send {
        let path = completions_path(of, limit);
        async move { self.query(&path).await }
    }

    /// Every completion record of a job, in task order, a page of
    /// [`PAGE_LIMIT_MAX`] at a time (at most [`PAGES_MAX`] pages).
    ///
    /// # Errors
    /// As [`Query::query`].
    fn job_completions(
        &self,
        job: &JobId,
    ) -> impl Future<Output = Result<Vec<CompletionView>, ClientError>> + Send {
        let job = *job;
        async move {
            let mut all: Vec<CompletionView> = Vec::new();
            let mut after = None;
            for _ in 0..PAGES_MAX {
                let page = self
                    .completions(&CompletionsOf::Job { job, after }, PAGE_LIMIT_MAX)
                    .await?;
                let full = page.completions.len() >= PAGE_LIMIT_MAX as usize;
                let last = page.completions.last().map(|c| c.task);
                all.extend(page.completions);
                match last {
                    Some(last) if full && after.is_none_or(|a| last > a) => after = Some(last),
                    _ => break,
                }
            }
            Ok(all)
        }
    }

    /// `/reputation/<id>`: a key's reputation counters and score.
    ///
    /// # Errors
    /// As [`Query::query`].
    fn reputation(
        &self,
        id: &AccountId,
    ) -> impl Future<Output = Result<ReputationView, ClientError>> + Send {
        let path = format!("/reputation/{id}");
        async move { self.query(&path).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_their_codes_to_errors() {
        let answer = |code: u32| QueryAnswer {
            code,
            log: "why".to_owned(),
            value: b"{}".to_vec(),
            height: 3,
        };
        assert_eq!(answer(0).into_value("/x").unwrap(), b"{}");
        assert!(answer(102).into_value("/x").unwrap_err().is_not_found());
        assert!(matches!(
            answer(101).into_value("/x"),
            Err(ClientError::QueryRefused {
                code: Code::BadQuery,
                ..
            })
        ));
        assert!(matches!(
            answer(9_999).into_value("/x"),
            Err(ClientError::UnknownCode { code: 9_999, .. })
        ));
    }

    #[test]
    fn a_renamed_or_missing_field_is_an_error_not_a_default() {
        let address = "00".repeat(32);
        let ok = format!(r#"{{"address":"{address}","balance":1,"nonce":2}}"#);
        assert_eq!(
            parse::<AccountView>("/account", ok.as_bytes())
                .unwrap()
                .nonce,
            2
        );
        let renamed = format!(r#"{{"address":"{address}","balance":1,"sequence":2}}"#);
        let error = parse::<AccountView>("/account", renamed.as_bytes()).unwrap_err();
        assert!(matches!(error, ClientError::BadAnswer { .. }), "{error}");
        assert!(error.to_string().contains("nonce"), "{error}");
    }

    #[test]
    fn paths_are_built_as_the_chain_reads_them() {
        let job = JobId([0xab; 32]);
        let hex = job.to_hex();
        assert_eq!(
            job_path(&job, JobTasks::Without),
            format!("/job/{hex}?tasks=false")
        );
        assert_eq!(job_path(&job, JobTasks::All), format!("/job/{hex}"));
        assert_eq!(
            job_path(
                &job,
                JobTasks::Page {
                    after: Some(4),
                    limit: 500
                }
            ),
            format!("/job/{hex}?after=4&limit=500")
        );
        let master = AccountId([1; 32]);
        assert_eq!(jobs_path(&JobsFilter::default()), "/jobs");
        assert_eq!(
            jobs_path(&JobsFilter {
                status: Some(JobStatus::Completed),
                master: Some(master),
                limit: Some(20),
                after: None,
            }),
            format!("/jobs?status=completed&master={master}&limit=20")
        );
        assert_eq!(
            completions_path(&CompletionsOf::Job { job, after: None }, 500),
            format!("/completions?job={hex}&limit=500")
        );
        assert_eq!(
            completions_path(
                &CompletionsOf::Worker {
                    worker: master,
                    after: Some((job, 7))
                },
                10
            ),
            format!("/completions?worker={master}&limit=10&after={hex}:7")
        );
        assert_eq!(
            workers_path(Some(&master), 500),
            format!("/workers?limit=500&after={master}")
        );
    }
}
