-- A re-sent command is answered with the recorded outcome: a `retained` answer keeps its legal basis.
ALTER TABLE handled_commands ADD COLUMN retained_basis text;
