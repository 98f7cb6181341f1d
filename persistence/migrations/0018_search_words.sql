-- The patient search by words (issue 19's p99). A query's words are first
-- looked up in the vocabulary of every name word (search_words: exact, as
-- a prefix, or forgiving a typo through a trigram index), then patients
-- are found by those words through patient_words, a b-tree of every word
-- and every pair of words, walked only as far as a page (a common name
-- costs a page, not its 27,000 namesakes; a given and a family name, one
-- walk of the pair instead of intersecting two long lists); a third word
-- filters through name_words. CockroachDB has b-trees and trigram
-- indexes, so the plan carries over. The GiST nearest-first walk this
-- replaces took 50 to 500 ms a query at a million patients.
ALTER TABLE patient_search ADD COLUMN name_words TEXT[] NOT NULL DEFAULT '{}';
UPDATE patient_search SET name_words = ARRAY(SELECT DISTINCT w FROM unnest(string_to_array(name_key, ' ')) AS w WHERE w <> '');
DROP INDEX patient_search_name;

-- Every word of every name ever indexed. A word outlives the names that
-- had it (a rename leaves it), which costs a candidate that finds nobody.
CREATE TABLE search_words (
    word TEXT COLLATE "C" PRIMARY KEY
);
INSERT INTO search_words SELECT DISTINCT unnest(name_words) FROM patient_search ON CONFLICT DO NOTHING;
CREATE INDEX search_words_trigrams ON search_words USING GIN (word gin_trgm_ops);


-- (key, patient) for every name word and every pair of words ("a b", a
-- before b in byte order; persistence.postingKeys): one word or two are
-- one walk in patient id order (so pages of a query are stable).
CREATE TABLE patient_words (
    word       TEXT COLLATE "C" NOT NULL,
    patient_id UUID NOT NULL,
    PRIMARY KEY (word, patient_id)
);
INSERT INTO patient_words SELECT DISTINCT w, patient_id FROM patient_search, unnest(name_words) AS w;
INSERT INTO patient_words SELECT DISTINCT a || ' ' || b, patient_id
    FROM patient_search, unnest(name_words) WITH ORDINALITY AS x (a, i), unnest(name_words) WITH ORDINALITY AS y (b, j)
    WHERE i <= 8 AND j <= 8 AND a COLLATE "C" < b COLLATE "C"
    ON CONFLICT DO NOTHING;
CREATE INDEX patient_words_patient ON patient_words (patient_id);
