"""Dev tooling for a checkout of geo-assets: never part of the wheel or the images.

- `emulators/`: local stand-ins for cloud services (S3, GCS, STAC, Azure Blob) started on 127.0.0.1
- `postgres.py`: a throwaway PostgreSQL server for the deployed instance yamls in deploy/
- `demo_cloud.py`: `make demo-cloud`, the demo on the aws and gcp profiles against those servers
- `sample_build.py`: rebuilds the sample imagery shipped in geo_assets/data/sample/

Tests, benchmarks and `make demo-cloud` import it from the checkout's root.
"""
