-- A proposal records who is answerable for it: the agent or user behind the token, or, for a
-- proposal made through a vault session, whoever minted that session. Before this, a
-- proposal made through a vault session recorded no one (only the session's public id), so
-- the rule "nobody reviews their own proposal" could not see that an agent had minted the
-- session itself. Fill those in from the session while it still exists; a proposal whose
-- session is gone keeps no creator, and the API never approves a proposal without one (it
-- can still be rejected, and it expires within a week).

UPDATE proposals
SET created_by_type = (SELECT tokens.created_by_type FROM tokens
                       WHERE tokens.public_id = proposals.created_by_session),
    created_by_id = (SELECT tokens.created_by_id FROM tokens
                     WHERE tokens.public_id = proposals.created_by_session)
WHERE created_by_id IS NULL AND created_by_session IS NOT NULL;
