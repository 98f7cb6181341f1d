package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where an S3-compatible store is.
type S3Config struct {
	// Endpoint is the service's URL: https://s3.eu-central-1.amazonaws.com,
	// http://127.0.0.1:9000. The scheme decides TLS.
	Endpoint string
	Bucket   string
	// Region is the bucket's region ("" lets the client ask the service).
	Region string
	// PathStyle addresses the bucket in the path (host/bucket/key), as most
	// self-hosted stores want, instead of in the host name (bucket.host/key).
	PathStyle bool
	// AccessKey and SecretKey are static credentials. Left empty, they come
	// from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	// AWS_SESSION_TOKEN), then the shared credentials file, then the
	// instance's or pod's IAM role.
	AccessKey, SecretKey string
}

// S3 is a Store in a bucket of an S3-compatible service. Objects are named
// by their key as is; a PUT there is atomic, as Store requires.
type S3 struct {
	client *minio.Client
	bucket string
}

// NewS3 makes the client; it does not reach the service (see Check).
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("blob: S3 endpoint %q is not an http(s)://host[:port] URL", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("blob: S3 needs a bucket")
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{},
		})
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds: creds, Secure: u.Scheme == "https", Region: cfg.Region, BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("blob: S3 client: %w", err)
	}
	return &S3{client: client, bucket: cfg.Bucket}, nil
}

// Check reaches the service and confirms the bucket exists, so a node with
// a wrong endpoint, bucket or credentials fails at start, not at the first
// upload.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob: S3 bucket %q: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("blob: S3 bucket %q does not exist", s.bucket)
	}
	return nil
}

// Put streams the object with its size announced, so the client sends it
// as one PUT (or, past its part size, as a multipart upload it reads part
// by part) without holding it whole.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	info, err := s.client.PutObject(ctx, s.bucket, key, r, size,
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err == nil && info.Size != size {
		err = ErrSize
	}
	return err
}

// Get opens the object; its Stat call finds a missing key before the
// caller starts to read (the client's GetObject itself is lazy).
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, notFound(err)
	}
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, notFound(err)
	}
	return obj, nil
}

// Delete removes the object; S3 answers a missing one with success too.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
}

// notFound maps the service's NoSuchKey to ErrNotFound.
func notFound(err error) error {
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return ErrNotFound
	}
	return err
}
