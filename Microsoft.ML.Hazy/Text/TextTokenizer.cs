using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Hazy.Text;

/// <summary>
/// BERT WordPiece tokenisation (Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/>) into the padded int64 batches a
/// BERT-family encoder takes: <c>[CLS] tokens [SEP]</c>, then padding, with its attention mask.
/// </summary>
public sealed class TextTokenizer
{
    private readonly BertTokenizer _tokenizer;

    private TextTokenizer(BertTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>The uncased vocabulary of <see cref="MiniLmModel"/>.</summary>
    public static TextTokenizer MiniLm()
    {
        using var vocabulary = MiniLmModel.OpenVocabulary();
        return Create(vocabulary, lowerCase: true);
    }

    /// <summary>
    /// A tokenizer over a WordPiece vocabulary (one token per line). An uncased vocabulary (<paramref name="lowerCase"/>)
    /// also strips accents, as BERT's uncased basic tokenizer does: "Café" becomes "cafe", not an unknown token.
    /// </summary>
    public static TextTokenizer Create(Stream vocabulary, bool lowerCase)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        var options = new BertOptions { LowerCaseBeforeTokenization = lowerCase, RemoveNonSpacingMarks = lowerCase };
        return new TextTokenizer(BertTokenizer.Create(vocabulary, options));
    }

    /// <summary>The underlying Microsoft.ML.Tokenizers tokenizer (decoding, special-token ids).</summary>
    public BertTokenizer Tokenizer => _tokenizer;

    /// <summary>Id of <c>[CLS]</c>.</summary>
    public int ClassificationTokenId => _tokenizer.ClassificationTokenId;

    /// <summary>Id of <c>[SEP]</c>.</summary>
    public int SeparatorTokenId => _tokenizer.SeparatorTokenId;

    /// <summary>Id of <c>[PAD]</c>.</summary>
    public int PaddingTokenId => _tokenizer.PaddingTokenId;

    /// <summary>The WordPiece ids of <paramref name="text"/>, without <c>[CLS]</c>/<c>[SEP]</c>.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _tokenizer.EncodeToIds(text, addSpecialTokens: false);
    }

    /// <summary>
    /// Tokenises <paramref name="texts"/> into one batch padded to its longest row. A row longer than
    /// <paramref name="maxTokens"/> (special tokens included) throws unless <paramref name="truncate"/> is set, which keeps
    /// its first <paramref name="maxTokens"/> − 2 WordPieces.
    /// </summary>
    /// <exception cref="ArgumentException">A text is null, or too long and <paramref name="truncate"/> is false.</exception>
    public TokenBatch EncodeBatch(IReadOnlyList<string> texts, int maxTokens, bool truncate = false)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (maxTokens < 2)
            throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "At least 2 tokens are needed for [CLS] and [SEP].");
        var rows = new IReadOnlyList<int>[texts.Count];
        int length = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            if (texts[i] is null)
                throw new ArgumentException($"Text {i} of the batch is null; pass an empty string for an empty text.", nameof(texts));
            var ids = _tokenizer.EncodeToIds(texts[i], addSpecialTokens: false);
            if (ids.Count + 2 > maxTokens)
            {
                if (!truncate)
                    throw new ArgumentException(
                        $"Text {i} of the batch has {ids.Count + 2} tokens with [CLS] and [SEP], more than the limit of {maxTokens}; " +
                        "shorten it, raise the limit or ask for truncation.", nameof(texts));
                ids = ids.Take(maxTokens - 2).ToArray();
            }
            rows[i] = ids;
            length = Math.Max(length, ids.Count + 2);
        }

        var batch = new TokenBatch(texts.Count, length);
        for (int i = 0; i < rows.Length; i++)
        {
            int offset = i * length;
            batch.Ids[offset] = ClassificationTokenId;
            for (int t = 0; t < rows[i].Count; t++)
                batch.Ids[offset + 1 + t] = rows[i][t];
            batch.Ids[offset + rows[i].Count + 1] = SeparatorTokenId;
            int used = rows[i].Count + 2;
            for (int t = used; t < length; t++)
                batch.Ids[offset + t] = PaddingTokenId;
            for (int t = 0; t < used; t++)
                batch.AttentionMask[offset + t] = 1;
            batch.Lengths[i] = used;
        }
        return batch;
    }
}

/// <summary>Token ids and attention mask of a batch, row-major batch × <see cref="Length"/>.</summary>
public sealed class TokenBatch
{
    internal TokenBatch(int batchSize, int length)
    {
        BatchSize = batchSize;
        Length = length;
        Ids = new long[batchSize * length];
        AttentionMask = new long[batchSize * length];
        Lengths = new int[batchSize];
    }

    /// <summary>Rows.</summary>
    public int BatchSize { get; }

    /// <summary>Tokens per row after padding (the longest row's).</summary>
    public int Length { get; }

    /// <summary>Token ids, padded with <c>[PAD]</c>.</summary>
    public long[] Ids { get; }

    /// <summary>1 for real tokens ([CLS] and [SEP] included), 0 for padding.</summary>
    public long[] AttentionMask { get; }

    /// <summary>Real tokens per row.</summary>
    public int[] Lengths { get; }
}
