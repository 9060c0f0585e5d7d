-- The one job a transaction's memos name (see schema.ts): a receipt naming the signature
-- does not send that job back to the verifier. Rows stored before are filled when the
-- verifier reads them again; until then their namers are reopened as before.
ALTER TABLE `chain_transactions` ADD `memo_job` text;
