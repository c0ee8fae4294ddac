/*
 * agree.h - LocalAgreement-2: deciding which words of successive
 * hypotheses are final (internal).
 *
 * A stream transcribes its rolling buffer again after every min_chunk of
 * new audio.  Each pass gives a hypothesis: words with absolute times.  A
 * word is committed once two consecutive hypotheses agree on it; committed
 * words are never revised.  This is the policy of Machacek et al.,
 * "Turning Whisper into Real-Time Transcription System" (2023), written
 * from its description:
 *
 *  - insert: of the new hypothesis keep the words that start after the
 *    last committed word's end (less a 0.1 s tolerance for alignment
 *    jitter), and drop a leading 1- to 5-word run that repeats the tail of
 *    the committed words (the model re-transcribes audio it has already
 *    been credited for);
 *  - agree: the longest common prefix of that and the previous pass's
 *    uncommitted words is committed.  Words agree when their normalized
 *    texts are equal and their start times lie within
 *    SOTTO__AGREE_MAX_SHIFT of each other;
 *  - the rest becomes the pending hypothesis (shown as a partial).
 */
#ifndef SOTTO_AGREE_H
#define SOTTO_AGREE_H

/* Two words with the same text whose starts differ by more than this many
 * seconds are different words (a repeated "the" a second later). */
#define SOTTO__AGREE_MAX_SHIFT 1.0

/* Longest run of repeated words removed at the committed boundary. */
#define SOTTO__AGREE_MAX_NGRAM 5

/* A word with absolute times; text is owned by the vector holding it. */
typedef struct sotto__hword {
    double start, end;
    char *text;
    float probability;
} sotto__hword;

typedef struct sotto__wordvec {
    sotto__hword *v;
    int n, cap;
} sotto__wordvec;

/* Appends a copy of the word (text is duplicated). */
int sotto__wordvec_push(sotto__wordvec *w, double start, double end,
                        const char *text, float probability);
/* Removes the first k words. */
void sotto__wordvec_drop_front(sotto__wordvec *w, int k);
void sotto__wordvec_clear(sotto__wordvec *w);
void sotto__wordvec_free(sotto__wordvec *w);

typedef struct sotto__agree {
    sotto__wordvec pending;    /* the last pass's uncommitted words */
    sotto__wordvec committed;  /* words committed since the last reset */
    double last_end;           /* end of the last committed word, seconds;
                                * -1e9 before any */
} sotto__agree;

void sotto__agree_init(sotto__agree *a);
void sotto__agree_free(sotto__agree *a);

/*
 * Takes the hypothesis hyp[0 .. n) of one pass and appends the words it
 * commits to *out.  With commit_all (the end of an utterance) every word
 * of the filtered hypothesis is committed.  Returns 0 or SOTTO_ENOMEM.
 */
int sotto__agree_insert(sotto__agree *a, const sotto__hword *hyp, int n,
                        int commit_all, sotto__wordvec *out);

/* Commits the pending words as they stand (an ending without a pass). */
int sotto__agree_commit_pending(sotto__agree *a, sotto__wordvec *out);

/* Forgets committed words that end at or before t (the buffer was cut
 * there); they no longer take part in the repetition check. */
void sotto__agree_forget_before(sotto__agree *a, double t);

/* Starts a new utterance: drops the pending and committed words, keeps
 * last_end so that nothing before it is committed again. */
void sotto__agree_reset(sotto__agree *a);

/* The number of words of w[0 .. n) before its first tandem repeat: the
 * smallest i such that w[i .. i+L) repeats w[i-L .. i) for some L >= 1
 * (texts compared as sotto__agree_same_text does); n when there is none.
 * A decode that loops ("Americans. And so my fellow Americans. And so")
 * keeps its words up to where the repetition starts. */
int sotto__agree_loop_start(const sotto__hword *w, int n);

/* Compares two words' texts ignoring case, spaces and ASCII punctuation
 * (exposed for the tests).  Returns 1 when they are the same word. */
int sotto__agree_same_text(const char *a, const char *b);

#endif
